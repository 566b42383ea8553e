/**
 * Framework cost per step: a real coordinator and N workers over real WebSockets on
 * 127.0.0.1, where each worker's "compute" is a fixed delay. Whatever a step takes beyond that
 * delay is Chorus: encode, transfer, decode and validate, reduce, optimizer, broadcast.
 * Also the bytes on the wire per step and worker against the floor of 2 x parameters x 4 bytes
 * (one fp32 gradient up, one fp32 weight vector down), and a breakdown of the pieces measured
 * one by one. The fake workers (fake-workers.ts) run on a worker thread, so their own encoding,
 * masking and decoding take the other core, as remote workers' would; with
 * CHORUS_BENCH_IN_PROCESS=1 they share the coordinator's thread (an upper bound).
 *
 *   npx tsx bench/overhead.bench.ts        (from apps/coordinator; writes bench/results/overhead.json)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { loadCifar10 } from '@chorus/data/node';
import { PRESETS, buildGraph, weightLayout } from '@chorus/model';
import { PROTOCOL_VERSION, encodeMessage, parseMessage, type Message } from '@chorus/protocol';
import { createOptimizer } from '@chorus/train';
import { fakeWorker } from './fake-workers.js';
import { ChorusServer, Coordinator, DEFAULT_RUN_OPTIONS, StepReducer, createLogger, createMetrics, type RunConfig } from '../src/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const data = await loadCifar10(process.env.CHORUS_CIFAR_DIR ?? resolve(root, '../shared/datasets/cifar-10-batches-bin'));
const spec = PRESETS.resnet20v2;
const layout = weightLayout(buildGraph(spec));
const P = layout.paramCount;
const DELAY_MS = 200;
const STEPS = 12;
const BATCH = 128;
// CHORUS_BENCH_IN_PROCESS=1: the fake workers share the coordinator's thread (the bench's
// first form, an upper bound); by default they run on a worker thread, like remote workers.
const IN_PROCESS = process.env.CHORUS_BENCH_IN_PROCESS === '1';

async function run(n: number) {
  const config: RunConfig = {
    preset: 'resnet20v2', spec, batch: BATCH, steps: STEPS, lr: 0.1, optimizer: 'sgd', weightDecay: 5e-4,
    warmupSteps: 1, schedule: 'cosine', bnGroup: 8, seed: 1, augment: true,
  };
  const metrics = createMetrics();
  const coordinator = new Coordinator({
    config,
    options: { ...DEFAULT_RUN_OPTIONS, minWorkers: n, evalExamples: 1, checkpointEvery: 0 },
    data,
    token: 't',
    log: createLogger({ quiet: true }),
    metrics,
  });
  const server = new ChorusServer({ host: '127.0.0.1', port: 0, coordinator, metrics, log: createLogger({ quiet: true }) });
  const { port } = await server.listen();
  const options = { url: `ws://127.0.0.1:${port}/ws`, token: 't', paramCount: P, bnStatCount: layout.bnStatCount, delayMs: DELAY_MS };
  let stopWorkers: () => Promise<void>;
  if (IN_PROCESS) {
    const sockets = await Promise.all(Array.from({ length: n }, () => fakeWorker(options)));
    stopWorkers = async () => { for (const s of sockets) s.close(); };
  } else {
    // tsx's loader does not follow into worker threads on Node 20: the thread registers it.
    const entry = `import('tsx/esm/api').then(({ tsImport }) => tsImport(${JSON.stringify(new URL('./fake-workers.ts', import.meta.url).href)}, ${JSON.stringify(import.meta.url)}))`;
    const thread = new Worker(entry, { eval: true, workerData: { ...options, n } });
    await new Promise<void>((resolve, reject) => { thread.once('message', () => resolve()); thread.once('error', reject); });
    stopWorkers = async () => { thread.postMessage('stop'); await thread.terminate(); };
  }
  await coordinator.run();
  const steps = coordinator.history.steps.slice(2); // the first steps measure speeds
  const meanMs = (steps.reduce((a, s) => a + s.seconds, 0) / steps.length) * 1000;
  const text = await metrics.metrics();
  const counter = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  const bytes = counter('chorus_bytes_received_total') + counter('chorus_bytes_sent_total');
  await stopWorkers();
  await server.close();
  // The coordinator's own share, from its step breakdown: adding gradients as they arrive plus
  // the totals, the optimizer, encoding and sending the update; and the last shard's transfer.
  const bd = (f: (b: NonNullable<(typeof steps)[number]['breakdown']>) => number) => steps.reduce((a, s) => a + (s.breakdown ? f(s.breakdown) : NaN), 0) / steps.length;
  const breakdown = { reduceMs: bd((b) => b.reduceMs), optimizerMs: bd((b) => b.optimizerMs), broadcastMs: bd((b) => b.broadcastMs), transferMs: bd((b) => b.transferMs), waitMs: bd((b) => b.waitMs) };
  return { workers: n, stepMs: meanMs, overheadMs: meanMs - DELAY_MS, bytesPerStepPerWorker: bytes / STEPS / n, floor: 2 * P * 4, breakdown };
}

function time(fn: () => void, reps = 30): number {
  fn();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  return (performance.now() - t0) / reps;
}

// Pieces, one by one, at resnet20v2 size.
const g = new Float32Array(P).fill(1e-3);
const moments = new Float32Array(layout.bnStatCount).fill(0.5);
const gradMsg: Message = { type: 'gradient', v: PROTOCOL_VERSION, step: 0, shardId: 1, count: 16, lossSum: 1, correct: 0, computeMs: 1, gradient: g, bnMoments: moments };
const gradFrame = encodeMessage(gradMsg);
const params = new Float32Array(P).fill(0.01);
const updateMsg: Message = { type: 'update', v: PROTOCOL_VERSION, version: 1, params, bnStats: moments };
const optimizer = createOptimizer('sgd', layout, { weightDecay: 5e-4 });
const pieces = {
  'encode gradient (worker)': time(() => encodeMessage(gradMsg)),
  'decode + validate gradient (coordinator)': time(() => parseMessage(gradFrame, { paramCount: P, bnStatCount: layout.bnStatCount, maxShardExamples: 1024 })),
  'reduce one shard': time(() => {
    const r = new StepReducer(layout, 16);
    r.expect(0, 16);
    r.accept(0, 16, { count: 16, lossSum: 1, correct: 0, gradient: g, bnMoments: moments });
  }),
  'optimizer (SGD Nesterov, weight decay)': time(() => optimizer.apply(params, g, 1e-9)),
  'encode update (once per step)': time(() => encodeMessage(updateMsg)),
};

const rows = [];
for (const n of (process.env.CHORUS_BENCH_WORKERS ?? "1,2,4,8").split(",").map(Number)) {
  rows.push(await run(n));
  console.log(JSON.stringify(rows.at(-1)));
}
const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`;
console.log(`\nmachine: ${machine}; resnet20v2 (${P.toLocaleString('en-US')} parameters), batch ${BATCH}, compute = ${DELAY_MS} ms delay, fake workers ${IN_PROCESS ? 'in the coordinator\'s thread' : 'on a worker thread'}\n`);
console.log('| workers | step (ms) | framework overhead (ms) | bytes/step/worker | floor 2·P·4 | ratio |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  console.log(`| ${r.workers} | ${r.stepMs.toFixed(1)} | ${r.overheadMs.toFixed(1)} | ${(r.bytesPerStepPerWorker / 1e6).toFixed(2)} MB | ${(r.floor / 1e6).toFixed(2)} MB | ${(r.bytesPerStepPerWorker / r.floor).toFixed(2)} |`);
}
console.log('\n| workers | reduce (ms) | optimizer (ms) | broadcast (ms) | last shard transfer (ms) | first-to-last arrival (ms) |\n| ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) console.log(`| ${r.workers} | ${r.breakdown.reduceMs.toFixed(1)} | ${r.breakdown.optimizerMs.toFixed(1)} | ${r.breakdown.broadcastMs.toFixed(1)} | ${r.breakdown.transferMs.toFixed(1)} | ${r.breakdown.waitMs.toFixed(1)} |`);
console.log('\n| piece | ms |\n| --- | ---: |');
for (const [k, v] of Object.entries(pieces)) console.log(`| ${k} | ${v.toFixed(2)} |`);
await mkdir(resolve(root, 'bench/results'), { recursive: true });
await writeFile(resolve(root, 'bench/results/overhead.json'), JSON.stringify({ machine, date: new Date().toISOString(), delayMs: DELAY_MS, fakeWorkers: IN_PROCESS ? 'in-process' : 'worker thread', rows, pieces }, null, 2) + '\n');
