#!/usr/bin/env node
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus, hostname } from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';
import * as tf from '@tensorflow/tfjs';
import { NODE_BACKENDS, describeChoice } from '@chorus/backend/node';
import { ChorusWorker, type WorkerStatus } from '@chorus/worker';
import { createWsConnect, workerUrl } from './ws-transport.js';
import { chooseWorkerBackend } from './choose-backend.js';
import { defaultMicroBatch } from '@chorus/backend';

const positive = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
  return n;
};

const program = new Command()
  .name('chorus-worker')
  .description('Join a Chorus training run as a headless Node.js worker.')
  .argument('<url>', 'coordinator WebSocket URL, e.g. ws://host:8080/ws, or wss://host:8080/ws when it serves TLS')
  .requiredOption('--token <token>', 'join token printed by the coordinator')
  .addOption(new Option('--backend <name>', 'force a TensorFlow.js backend').choices([...NODE_BACKENDS]))
  .option('--micro-batch <n>', 'most examples per forward/backward pass (default: by backend)', positive('--micro-batch'))
  .option('--name <name>', 'a name for logs', hostname())
  .option('--slowdown <x>', 'behave like a device this many times slower (tests, benchmarks)', positive('--slowdown'), 1)
  .option('--quiet', 'no progress lines')
  .option('--ca <file>', "PEM certificate of the CA that signed the coordinator's TLS certificate (a private CA); trusted instead of the usual roots. NODE_EXTRA_CA_CERTS=FILE adds one to them instead")
  .addOption(new Option('--cert-fingerprint <sha256>', "accept exactly the coordinator certificate with this SHA-256 fingerprint (the coordinator's --local-workers use it)").hideHelp())
  .showHelpAfterError();

/** The --ca file's contents, or an error that says what is wrong with it. */
function readCa(path: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    throw new Error(`cannot read --ca ${path}: ${e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message}`);
  }
  try {
    new X509Certificate(pem);
  } catch {
    throw new Error(`--ca ${path} is not a PEM certificate`);
  }
  return pem;
}

async function main(): Promise<void> {
  tf.env().set('PROD', true);
  program.parse();
  const [rawUrl] = program.args;
  const opts = program.opts<{ token: string; backend?: string; microBatch?: number; name: string; slowdown: number; quiet?: boolean; ca?: string; certFingerprint?: string }>();
  const url = workerUrl(rawUrl);
  // Read before choosing a backend (which takes seconds), so a wrong path fails at once.
  const connect = createWsConnect({ ca: opts.ca === undefined ? undefined : readCa(opts.ca), certFingerprint: opts.certFingerprint });
  if (url.startsWith('ws://') && opts.ca) console.warn(`warning: --ca is only used for wss:// URLs, and ${url} is ws://`);
  const prefix = `[${opts.name}]`;
  const backend = await chooseWorkerBackend({
    url,
    force: opts.backend,
    microBatch: opts.microBatch,
    tls: { ca: opts.ca === undefined ? undefined : readCa(opts.ca), certFingerprint: opts.certFingerprint },
    log: (line) => console.log(`${prefix} ${line}`),
  });
  if (backend.imagesPerSecond !== null) console.log(`${prefix} backends timed on a training step of ${backend.preset}:`);
  console.log(`${prefix} ${describeChoice(backend).replace(/\n/g, `\n${prefix} `)}`);
  let lastLine = 0;
  let lastStepsDone = -1;
  const worker = new ChorusWorker({
    url,
    token: opts.token,
    connect,
    runtime: {
      kind: 'node',
      backend: backend.tfBackend,
      device: backend.device,
      cores: cpus().length,
      microBatch: Math.floor(opts.microBatch ?? defaultMicroBatch(backend.tfBackend)),
      agent: `node ${process.version} ${process.platform}-${process.arch} ${opts.name}`,
      backends: backend.measurements,
    },
    slowdown: opts.slowdown,
    log: (line) => console.log(`${prefix} ${line}`),
    onStatus: (s: WorkerStatus) => {
      const now = Date.now();
      // A line when there is news, at most every 5 s: a worker waiting (evaluation, pause, no
      // share) would otherwise repeat the same line.
      if (opts.quiet || s.state !== 'ready' || s.lastLoss === null || now - lastLine < 5000 || s.stepsDone === lastStepsDone) return;
      lastLine = now;
      lastStepsDone = s.stepsDone;
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
