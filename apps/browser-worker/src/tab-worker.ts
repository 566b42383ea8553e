/**
 * The tab's Web Worker (a module worker): chooses a tfjs backend, then runs the shared worker
 * runtime (@chorus/worker's ChorusWorker) over the browser WebSocket transport. Training here
 * keeps the page responsive; the page and this worker talk only by postMessage.
 */
/// <reference lib="webworker" />
import * as tf from '@tensorflow/tfjs';
import { Replica } from '@chorus/train';
import { CLOSE_CODES, type ShardResult } from '@chorus/protocol';
import { ChorusWorker, computeShard, measureTrainingSpeed, specForPreset, type Connect, type ReplicaPool, type WorkerLog, type WorkerStatus } from '@chorus/worker';
import type { ResNetV2Spec } from '@chorus/model';
import { formatRate } from '@chorus/backend';
import { selectBrowserBackend } from './backends.js';
import { connectBrowserWebSocket } from './browser-transport.js';
import type { BackendReport, GradientReply, GradientRequest, JoinOptions, PageToWorker, WorkerToPage } from './messages.js';
import { agentString } from './options.js';
import { defaultTabReplicas, startTabReplicas } from './tab-replicas.js';

declare const self: DedicatedWorkerGlobalScope;

function post(message: WorkerToPage, transfer: Transferable[] = []): void {
  self.postMessage(message, transfer);
}

const log: WorkerLog = (level, message, fields) => post({ type: 'log', level, message, fields });

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

let hidden = false;
let worker: ChorusWorker | null = null;
let started = false;
let leaving: string | null = null;
/** tf.memory().numTensors after each shard, newest last: flat when nothing leaks. */
const tensorsPerShard: number[] = [];
let lastStepsDone = 0;
/** The close code of the last connection, to tell "the run is over" from a refusal. */
let lastCloseCode: number | null = null;
const connect: Connect = (url, events) =>
  connectBrowserWebSocket(url, {
    onMessage: events.onMessage,
    onClose: (code, reason) => {
      lastCloseCode = code;
      events.onClose(code, reason);
    },
  });
/** Selftest requests run one at a time, in order. */
let selftestQueue: Promise<void> = Promise.resolve();
/** On WASM with more than one thread: the replica workers that compute training shards. */
let replicas: ReplicaPool | null = null;
/** Each selftest request has its own weights. */
let selftestVersion = 0;

function memory() {
  const m = tf.memory();
  return { numTensors: m.numTensors, numBytes: m.numBytes };
}

function onStatus(status: WorkerStatus): void {
  if (status.stepsDone !== lastStepsDone) {
    lastStepsDone = status.stepsDone;
    tensorsPerShard.push(tf.memory().numTensors);
    if (tensorsPerShard.length > 200) tensorsPerShard.shift();
  }
  post({ type: 'status', status, memory: memory(), tensorsPerShard: [...tensorsPerShard] });
}

/** The preset of the coordinator that served this page, or null (no run: ?selftest on a bare server). */
async function runPreset(): Promise<string | null> {
  try {
    const response = await fetch(new URL('/api/status', self.location.href));
    if (!response.ok) return null;
    const preset = ((await response.json()) as { preset?: unknown }).preset;
    return typeof preset === 'string' ? preset : null;
  } catch {
    return null;
  }
}

async function start(options: JoinOptions): Promise<void> {
  tf.env().set('PROD', true);
  post({ type: 'phase', phase: 'selecting-backend' });
  // Candidates are timed on the model the run trains (the page's server says which); a forced
  // backend is not timed, so nothing is fetched then.
  const model = options.backend ? null : specForPreset(await runPreset());
  if (model) log('info', 'timing backends on a training step', { preset: model.preset });
  const report = await selectBrowserBackend({
    measure: model ? (_name, microBatch) => measureTrainingSpeed(model.spec, { microBatch }) : undefined,
    force: options.backend,
    // worker.js and the .wasm files are in the same folder.
    wasmPaths: new URL('./', self.location.href).href,
    microBatch: options.microBatch,
    onProgress: (e) => {
      if (e.kind === 'skipped') log('info', 'backend skipped', { backend: e.name, reason: e.reason });
      else if (e.kind === 'measured') log('info', 'backend timed', { backend: e.name, imagesPerSecond: formatRate(e.imagesPerSecond) });
      else log('info', e.kind === 'trying' ? 'trying a backend' : 'timing a training step', { backend: e.name });
    },
  });
  await startReplicas(report, options.threads);
  post({ type: 'backend', report });
  if (options.selftest) {
    post({ type: 'phase', phase: 'selftest-ready' });
    return;
  }
  if (leaving !== null) {
    await replicas?.close();
    return post({ type: 'stopped', reason: leaving });
  }
  post({ type: 'phase', phase: 'joining' });
  worker = new ChorusWorker({
    url: options.url,
    token: options.token,
    connect,
    runtime: {
      kind: 'browser',
      backend: report.tfBackend,
      device: report.device.slice(0, 500),
      cores: Math.max(1, Math.min(4096, navigator.hardwareConcurrency || 1)),
      microBatch: report.microBatch,
      agent: agentString(navigator.userAgent),
      backends: report.measurements,
    },
    isHidden: () => hidden,
    onStatus,
    log,
    shardComputer: replicas ?? undefined,
  });
  try {
    await worker.start();
  } catch (error) {
    // The runtime treats a shutting-down coordinator as final; for a tab that is the run ending.
    if (lastCloseCode !== CLOSE_CODES.shutdown) throw error;
    return post({ type: 'stopped', reason: 'the coordinator shut down: the run is over (or was stopped)' });
  } finally {
    await replicas?.close();
    replicas = null;
  }
  post({ type: 'stopped', reason: leaving ?? 'stopped' });
}

/**
 * On WASM, every core: `threads` replica workers (default: one per core, capped), each with
 * its own single-threaded WASM instance, compute the training shards; the tab's own replica
 * only evaluates. Other backends, or 1 thread, keep the tab's own replica. If the workers
 * cannot start, the tab trains on its own replica and says why.
 */
async function startReplicas(report: BackendReport, threads: number | null): Promise<void> {
  if (report.tfBackend !== 'wasm') return;
  const count = threads ?? defaultTabReplicas(navigator as WorkerNavigator & { deviceMemory?: number });
  if (count < 2) return;
  try {
    replicas = await startTabReplicas(count);
  } catch (error) {
    log('warn', 'training on the tab\'s own replica: the replica workers did not start', { replicas: count, reason: errorText(error) });
    return;
  }
  report.replicas = count;
  report.device = `${report.device}, training on ${count} replica workers (single-threaded each)`;
  log('info', `training on ${count} replica workers`, { backend: 'wasm' });
}

/** ?selftest: the gradient of one shard, computed exactly as ChorusWorker computes an assign (on the replica workers, if any). */
async function computeGradient(request: GradientRequest): Promise<GradientReply> {
  const tensorsBefore = tf.memory().numTensors;
  let result: ShardResult;
  if (replicas) {
    const model = { spec: request.spec as ResNetV2Spec, bnGroup: request.bnGroup, microBatch: request.microBatch };
    result = await replicas.compute({ ...model, params: request.params, paramsVersion: selftestVersion++ }, request);
  } else {
    const replica = new Replica(request.spec as ResNetV2Spec, { microBatch: request.microBatch, bnGroup: request.bnGroup });
    try {
      replica.setParams(request.params);
      result = await computeShard(replica, request);
    } finally {
      replica.dispose();
    }
  }
  // After the replica is gone: what a shard leaves behind.
  return { ...result, tensorsBefore, tensorsAfter: tf.memory().numTensors };
}

self.onmessage = (event: MessageEvent<PageToWorker>) => {
  const message = event.data;
  switch (message.type) {
    case 'start':
      if (started) return;
      started = true;
      hidden = message.hidden;
      start(message.options).catch((error: unknown) => post({ type: 'fatal', error: errorText(error) }));
      break;
    case 'visibility':
      hidden = message.hidden;
      break;
    case 'leave':
      leaving = message.reason;
      worker?.stop(message.reason);
      break;
    case 'publicWeights': {
      const weights = worker?.publicWeights() ?? null;
      const factors = worker?.lowRankFactors() ?? null;
      post({ type: 'publicWeights', id: message.id, weights, factors }, [...(weights ? [weights.buffer] : []), ...(factors ? [factors.buffer] : [])]);
      break;
    }
    case 'gradient': {
      const { id, request } = message;
      selftestQueue = selftestQueue.then(async () => {
        try {
          const reply = await computeGradient(request);
          post({ type: 'gradient', id, reply, error: null }, [reply.gradient.buffer, reply.bnMoments.buffer]);
        } catch (error) {
          post({ type: 'gradient', id, reply: null, error: errorText(error) });
        }
      });
      break;
    }
  }
};
