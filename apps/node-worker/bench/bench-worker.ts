/**
 * A bench-only Node worker: the real worker runtime (ChorusWorker), the real WebSocket
 * transport, the real codec and protocol, but the gradient computation is replaced by a sleep
 * of a fixed time per example and a real resnet20v2 gradient captured once from a WASM step
 * (capture-gradient.ts). Many of these fit on two cores, so links.bench.ts can measure what
 * the wire and the coordinator cost without N processes fighting over the CPU for compute.
 *
 *   node --import tsx bench/bench-worker.ts ws://HOST:PORT/ws --token T --gradient FILE --ms-per-example 12.5
 *
 * Not a user feature: it lives under bench/ and is never built into dist/.
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { Command } from 'commander';
import * as tf from '@tensorflow/tfjs';
import { formatLogLine } from '@chorus/protocol';
import { Replica, type EvalResult, type ShardGradient } from '@chorus/train';
import { ChorusWorker, type WorkerLog } from '@chorus/worker';
import { createWsConnect, workerUrl } from '../src/ws-transport.js';
import { readCapturedGradient } from './captured-gradient.js';

const opts = new Command()
  .argument('<url>')
  .requiredOption('--token <token>')
  .requiredOption('--gradient <file>', 'captured gradient (capture-gradient.ts)')
  .requiredOption('--ms-per-example <ms>', 'simulated compute time per example', Number)
  .option('--name <name>', 'a name for logs', 'bench')
  .parse();
const [rawUrl] = opts.args;
const { token, gradient: file, msPerExample, name } = opts.opts<{ token: string; gradient: string; msPerExample: number; name: string }>();
const captured = readCapturedGradient(readFileSync(file));

// The replica only holds the weights (setParams stays real: the worker applies every update);
// its compute is a sleep proportional to the shard, so N workers scale like N devices would.
// The plain-JS CPU backend is enough for that and loads in no time.
await tf.setBackend('cpu');
Replica.prototype.computeGradients = async function (_images: Float32Array, labels: Uint8Array): Promise<ShardGradient> {
  const count = labels.length;
  await new Promise((resolve) => setTimeout(resolve, count * msPerExample));
  // The same values every time (what matters is their size and distribution on the wire), in
  // a fresh array as a real replica returns: a codec with error feedback may work in place.
  return { count, gradient: captured.gradient.slice(), lossSum: captured.lossPerExample * count, correct: 0, bn: { count, moments: captured.bnMoments } };
};
Replica.prototype.evaluate = async function (_images: Float32Array, labels: Uint8Array): Promise<EvalResult> {
  return { count: labels.length, lossSum: captured.lossPerExample * labels.length, correct: 0 };
};

const log: WorkerLog = (level, message, fields = {}) => {
  if (level === 'warn' || level === 'error') process.stderr.write(`${formatLogLine(level, message, { name, ...fields })}\n`);
};
const worker = new ChorusWorker({
  url: workerUrl(rawUrl),
  token,
  connect: createWsConnect({}),
  runtime: { kind: 'node', backend: 'bench', device: `${msPerExample} ms/example sleep`, cores: cpus().length, microBatch: 4096, agent: `bench ${name}` },
  log,
  reconnect: { initialMs: 100, maxMs: 1000 },
});
const stop = () => worker.stop('bench over');
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
await worker.start();
process.exit(0);
