#!/usr/bin/env node
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, hostname } from 'node:os';
import { Command, InvalidArgumentError, Option } from 'commander';
import * as tf from '@tensorflow/tfjs';
import { NODE_BACKENDS } from '@chorus/backend/node';
import { microBatchFor } from '@chorus/backend';
import { formatLogLine } from '@chorus/protocol';
import { ChorusWorker, type WorkerLog, type WorkerStatus } from '@chorus/worker';
import { createWsConnect, workerUrl } from './ws-transport.js';
import { ReplicaThreadPool } from './threads/pool.js';
import { chooseWorkerBackend, logChoice } from './choose-backend.js';

const positive = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
  return n;
};

const positiveInteger = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};

const program = new Command()
  .name('chorus-worker')
  .description('Join a Chorus training run as a headless Node.js worker.')
  .argument('<url>', 'coordinator WebSocket URL, e.g. ws://host:8080/ws, or wss://host:8080/ws when it serves TLS')
  .requiredOption('--token <token>', 'join token printed by the coordinator')
  .addOption(new Option('--backend <name>', 'force a TensorFlow.js backend').choices([...NODE_BACKENDS]))
  .option('--micro-batch <n>', 'most examples per forward/backward pass (default: by backend)', positive('--micro-batch'))
  .option('--threads <n>', 'replicas on wasm/cpu, one per thread (default: the cores available); GPU backends keep one', positiveInteger('--threads'))
  .option('--name <name>', 'a name for logs', hostname())
  .option('--slowdown <x>', 'behave like a device this many times slower (tests, benchmarks)', positive('--slowdown'), 1)
  .option('--quiet', 'no progress lines')
  .option('--ca <file>', "PEM certificate of the CA that signed the coordinator's TLS certificate (a private CA); trusted instead of the usual roots. NODE_EXTRA_CA_CERTS=FILE adds one to them instead")
  .addOption(new Option('--cert-fingerprint <sha256>', "accept exactly the coordinator certificate with this SHA-256 fingerprint (the coordinator's --local-workers use it)").hideHelp())
  .showHelpAfterError();

/**
 * Lines as the coordinator writes them, each naming this worker, so a coordinator's output with
 * its --local-workers (which relays theirs) reads as one log. Errors go to stderr.
 */
function workerLog(name: string): WorkerLog {
  return (level, message, fields = {}) => {
    const line = formatLogLine(level, message, { name, ...fields });
    (level === 'error' ? process.stderr : process.stdout).write(`${line}\n`);
  };
}

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
  const opts = program.opts<{ token: string; backend?: string; microBatch?: number; threads?: number; name: string; slowdown: number; quiet?: boolean; ca?: string; certFingerprint?: string }>();
  const log = workerLog(opts.name);
  const url = workerUrl(rawUrl);
  // Read before choosing a backend (which takes seconds), so a wrong path fails at once.
  const connect = createWsConnect({ ca: opts.ca === undefined ? undefined : readCa(opts.ca), certFingerprint: opts.certFingerprint });
  if (url.startsWith('ws://') && opts.ca) log('warn', '--ca is only used for wss:// URLs', { url });
  const backend = await chooseWorkerBackend({
    url,
    force: opts.backend,
    microBatch: opts.microBatch,
    tls: { ca: opts.ca === undefined ? undefined : readCa(opts.ca), certFingerprint: opts.certFingerprint },
    log,
  });
  logChoice(log, backend);
  // Only CPU backends gain from more replicas: a GPU is one device, already used by one.
  const cpuBackend = backend.tfBackend === 'wasm' || backend.tfBackend === 'cpu' ? backend.tfBackend : null;
  const threads = cpuBackend ? (opts.threads ?? availableParallelism()) : 1;
  if (opts.threads !== undefined && opts.threads > 1 && !cpuBackend) {
    log('info', '--threads applies to wasm and cpu only; one replica', { backend: backend.tfBackend });
  }
  const pool = cpuBackend && threads > 1 ? await ReplicaThreadPool.start(threads, cpuBackend) : null;
  if (pool) log('info', `training on ${threads} threads`, { backend: backend.tfBackend });
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
      cores: cpuBackend ? threads : cpus().length,
      microBatch: microBatchFor(backend.tfBackend, 'node', opts.microBatch),
      agent: `node ${process.version} ${process.platform}-${process.arch} ${opts.name}`,
      backends: backend.measurements,
    },
    slowdown: opts.slowdown,
    ...(pool ? { shardComputer: pool } : {}),
    log,
    onStatus: (s: WorkerStatus) => {
      const now = Date.now();
      // A line when there is news, at most every 5 s: a worker waiting (evaluation, pause, no
      // share) would otherwise repeat the same line.
      if (opts.quiet || s.state !== 'ready' || s.lastLoss === null || now - lastLine < 5000 || s.stepsDone === lastStepsDone) return;
      lastLine = now;
      lastStepsDone = s.stepsDone;
      log('info', `${s.stepsDone} shards done`, {
        weights: `v${s.version}`,
        lastShard: s.lastShard,
        loss: s.lastLoss.toFixed(3),
        imagesPerSecond: s.imagesPerSecond?.toFixed(1),
      });
    },
  });
  const stop = () => worker.stop('worker interrupted');
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    await worker.start();
  } finally {
    await pool?.close();
  }
  process.exit(0);
}

main().catch((error: unknown) => {
  workerLog(program.opts<{ name?: string }>().name ?? hostname())('error', error instanceof Error ? error.message : String(error));
  process.exit(1);
});
