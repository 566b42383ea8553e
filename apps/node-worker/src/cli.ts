#!/usr/bin/env node
import { cpus, hostname } from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';
import * as tf from '@tensorflow/tfjs';
import { NODE_BACKENDS, describeChoice, selectNodeBackend } from '@chorus/backend/node';
import { ChorusWorker, type WorkerStatus } from '@chorus/worker';
import { connectWs } from './ws-transport.js';
import { defaultMicroBatch } from '@chorus/backend';

const positive = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
  return n;
};

const program = new Command()
  .name('chorus-worker')
  .description('Join a Chorus training run as a headless Node.js worker.')
  .argument('<url>', 'coordinator WebSocket URL, e.g. ws://host:8080/ws')
  .requiredOption('--token <token>', 'join token printed by the coordinator')
  .addOption(new Option('--backend <name>', 'force a TensorFlow.js backend').choices([...NODE_BACKENDS]))
  .option('--micro-batch <n>', 'most examples per forward/backward pass (default: by backend)', positive('--micro-batch'))
  .option('--name <name>', 'a name for logs', hostname())
  .option('--slowdown <x>', 'behave like a device this many times slower (tests, benchmarks)', positive('--slowdown'), 1)
  .option('--quiet', 'no progress lines')
  .showHelpAfterError();

async function main(): Promise<void> {
  tf.env().set('PROD', true);
  program.parse();
  const [rawUrl] = program.args;
  const opts = program.opts<{ token: string; backend?: string; microBatch?: number; name: string; slowdown: number; quiet?: boolean }>();
  const url = /^wss?:\/\//.test(rawUrl) ? rawUrl : `ws://${rawUrl.replace(/^https?:\/\//, '')}`;
  const backend = await selectNodeBackend({ force: opts.backend });
  const prefix = `[${opts.name}]`;
  console.log(`${prefix} ${describeChoice(backend).replace(/\n/g, `\n${prefix} `)}`);
  let lastLine = 0;
  const worker = new ChorusWorker({
    url: url.endsWith('/ws') ? url : `${url.replace(/\/$/, '')}/ws`,
    token: opts.token,
    connect: connectWs,
    runtime: {
      kind: 'node',
      backend: backend.tfBackend,
      device: backend.device,
      cores: cpus().length,
      microBatch: Math.floor(opts.microBatch ?? defaultMicroBatch(backend.tfBackend)),
      agent: `node ${process.version} ${process.platform}-${process.arch} ${opts.name}`,
    },
    slowdown: opts.slowdown,
    log: (line) => console.log(`${prefix} ${line}`),
    onStatus: (s: WorkerStatus) => {
      const now = Date.now();
      if (opts.quiet || s.state !== 'ready' || s.lastLoss === null || now - lastLine < 5000) return;
      lastLine = now;
      console.log(
        `${prefix} weights v${s.version}: ${s.stepsDone} shards done, last ${s.lastShard} images, ` +
          `loss ${s.lastLoss.toFixed(3)}, ${s.imagesPerSecond?.toFixed(1)} img/s`,
      );
    },
  });
  const stop = () => worker.stop('worker interrupted');
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  await worker.start();
  process.exit(0);
}

main().catch((error: unknown) => {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
