/**
 * The /join page: starts the training Web Worker (worker.js), forwards the tab's visibility
 * and the Leave button to it, and shows what it reports. No training or protocol logic here.
 *
 * For tests and diagnostics the page exposes `window.chorus` (see ChorusTab): its state, and in
 * ?selftest mode `computeGradient`, which runs one shard through the Web Worker's Replica;
 * in a run, `publicWeights` (under fp16/int8) and `lowRankFactors` (low-rank runs) for comparing with the coordinator's, bit for bit.
 */
import type { WorkerStatus } from '@chorus/worker';
// The formatter alone: the package's index would bring the codec and its schemas into the page.
import { formatLogLine, type LogFields, type LogLevel } from '@chorus/protocol/log-line';
import type { BackendReport, GradientReply, GradientRequest, JoinOptions, MemoryReport, PageToWorker, WorkerToPage } from './messages.js';
import { parseJoinOptions } from './options.js';

export interface TabState {
  phase: 'starting' | 'selecting-backend' | 'selftest-ready' | 'joining' | 'joined' | 'reconnecting' | 'leaving' | 'left' | 'failed';
  backend: BackendReport | null;
  status: WorkerStatus | null;
  memory: MemoryReport | null;
  /** tf.memory().numTensors after each shard (newest last): flat when nothing leaks. */
  tensorsPerShard: number[];
  hidden: boolean;
  /** The run's global batch (from /api/status), for the share shown. */
  batch: number | null;
  error: string | null;
  /** Why the tab is no longer in the run (phase 'left'). */
  endReason: string | null;
  log: string[];
}

/** A shard for ?selftest mode; arrays may be plain number arrays (easy to pass from a test). */
export interface GradientRequestInput {
  spec: unknown;
  bnGroup: number;
  microBatch: number;
  params: ArrayLike<number>;
  pixels: ArrayLike<number>;
  labels: ArrayLike<number>;
  indices: ArrayLike<number>;
  augmentSeed: number;
}

/** A GradientReply with plain arrays (easy to read from a test). */
export type GradientResult = Omit<GradientReply, 'gradient' | 'bnMoments'> & { gradient: number[]; bnMoments: number[] };

export interface ChorusTab {
  readonly state: TabState;
  leave(): void;
  computeGradient(request: GradientRequestInput): Promise<GradientResult>;
  /** The public weights the tab computes at under fp16/int8 (null under fp32 or before joining). */
  publicWeights(): Promise<number[] | null>;
  /** The low-rank factors the tab projects onto (null unless a low-rank run). */
  lowRankFactors(): Promise<number[] | null>;
}

declare global {
  interface Window {
    chorus: ChorusTab;
  }
}

const state: TabState = {
  phase: 'starting',
  backend: null,
  status: null,
  memory: null,
  tensorsPerShard: [],
  hidden: document.visibilityState === 'hidden',
  batch: null,
  error: null,
  endReason: null,
  log: [],
};

const $ = (id: string) => document.getElementById(id)!;
const leaveButton = $('leave') as HTMLButtonElement;
let worker: Worker | null = null;
let nextRequestId = 1;
const pending = new Map<number, { resolve: (r: GradientResult) => void; reject: (e: Error) => void }>();
const pendingWeights = new Map<number, (held: { weights: number[] | null; factors: number[] | null }) => void>();

function send(message: PageToWorker, transfer: Transferable[] = []): void {
  worker?.postMessage(message, transfer);
}

function log(level: LogLevel, message: string, fields?: LogFields): void {
  state.log.push(formatLogLine(level, message, fields));
  if (state.log.length > 300) state.log.shift();
  const box = $('log');
  box.textContent = state.log.join('\n');
  box.scrollTop = box.scrollHeight;
}

function fail(error: string): void {
  state.phase = 'failed';
  state.error = error;
  log('error', error);
  for (const p of pending.values()) p.reject(new Error(error));
  pending.clear();
  settleWeightRequests();
  worker?.terminate();
  worker = null;
  render();
}

const PHASE_TEXT: Record<TabState['phase'], string> = {
  starting: 'starting',
  'selecting-backend': 'choosing a backend (running a test training step)',
  'selftest-ready': 'self-test mode: backend ready, not joining',
  joining: 'connecting to the coordinator',
  joined: 'joined',
  reconnecting: 'connection lost: reconnecting',
  leaving: 'leaving',
  left: 'not in the run any more',
  failed: 'failed',
};

/** "wasm 25.7 images/s (chosen), webgl 1.1 images/s, webgpu not timed", or why there is none. */
function measuredText(b: BackendReport): string {
  if (b.imagesPerSecond === null && b.measurements.every((m) => m.imagesPerSecond === null)) return 'not timed (backend forced)';
  return b.measurements
    .map((m) => `${m.name} ${m.imagesPerSecond === null ? 'not timed' : `${m.imagesPerSecond.toFixed(m.imagesPerSecond < 10 ? 2 : 1)} images/s`}${m.skipped === undefined ? ' (chosen)' : ''}`)
    .join(', ');
}

function render(): void {
  const s = state.status;
  const phase = state.phase === 'joined' && s ? `${PHASE_TEXT.joined}: ${s.state}` : PHASE_TEXT[state.phase];
  $('phase').textContent = phase;
  const b = state.backend;
  if (b) {
    $('backend').textContent = b.tfBackend;
    $('device').textContent = `${b.device} (micro-batch ${b.microBatch})`;
    $('adapter').textContent = b.adapter
      ? `vendor: ${b.adapter.vendor || '?'}, architecture: ${b.adapter.architecture || '?'}, description: ${b.adapter.description || '?'}, ` +
        `isFallbackAdapter: ${b.adapter.isFallbackAdapter}`
      : 'none (not WebGPU)';
    $('skipped').textContent = b.skipped.length ? b.skipped.map((k) => `${k.name}: ${k.reason}`).join('; ') : 'none';
    $('measured').textContent = measuredText(b);
  }
  if (s) {
    $('worker-id').textContent = s.workerId ?? '-';
    $('steps').textContent = String(s.stepsDone);
    $('speed').textContent = s.imagesPerSecond === null ? '-' : `${s.imagesPerSecond.toFixed(1)} images/s`;
    $('share').textContent = s.lastShard
      ? `${s.lastShard} images${state.batch ? ` (${((100 * s.lastShard) / state.batch).toFixed(1)}% of batch ${state.batch})` : ''}`
      : '-';
    $('loss').textContent = s.lastLoss === null ? '-' : s.lastLoss.toFixed(4);
  }
  if (state.memory) $('tensors').textContent = `${state.memory.numTensors} (${(state.memory.numBytes / 2 ** 20).toFixed(1)} MiB)`;
  $('error').textContent = state.error ?? '';
  $('note').textContent =
    state.phase === 'left'
      ? `Left the run: ${state.endReason ?? ''}. Reload the page to join again.`
      : state.hidden && state.phase === 'joined'
        ? 'This tab is hidden: the browser throttles it, so the coordinator gives it only a token share.'
        : '';
  leaveButton.disabled = !(state.phase === 'joining' || state.phase === 'joined' || state.phase === 'reconnecting');
  document.title = `Chorus: ${phase}`;
}

async function fetchBatch(): Promise<void> {
  try {
    const response = await fetch('/api/status');
    const body = (await response.json()) as { batch?: unknown };
    if (typeof body.batch === 'number') state.batch = body.batch;
    render();
  } catch {
    // Only for the share shown; the run does not need it.
  }
}

function onWorkerMessage(message: WorkerToPage): void {
  switch (message.type) {
    case 'phase':
      state.phase = message.phase;
      if (message.phase === 'selftest-ready') log('info', 'self-test mode: call window.chorus.computeGradient(...)');
      break;
    case 'backend':
      state.backend = message.report;
      for (const s of message.report.skipped) log('info', 'not using a backend', { backend: s.name, reason: s.reason });
      log('info', 'backend chosen', { backend: message.report.name, tf: message.report.tfBackend, device: message.report.device, microBatch: message.report.microBatch });
      log('info', 'measured', { backends: measuredText(message.report) });
      break;
    case 'status': {
      const first = state.status?.workerId == null && message.status.workerId != null;
      state.status = message.status;
      state.memory = message.memory;
      state.tensorsPerShard = message.tensorsPerShard;
      if (state.phase !== 'leaving' && state.phase !== 'left') {
        state.phase = message.status.state === 'reconnecting' ? 'reconnecting' : message.status.workerId ? 'joined' : 'joining';
      }
      if (first) void fetchBatch();
      break;
    }
    case 'log':
      log(message.level, message.message, message.fields);
      break;
    case 'stopped':
      state.phase = 'left';
      state.endReason = message.reason;
      log('info', 'left the run', { reason: message.reason });
      worker?.terminate();
      worker = null;
      settleWeightRequests();
      break;
    case 'fatal':
      fail(message.error);
      return;
    case 'publicWeights':
      pendingWeights.get(message.id)?.({ weights: message.weights ? Array.from(message.weights) : null, factors: message.factors ? Array.from(message.factors) : null });
      pendingWeights.delete(message.id);
      break;
    case 'gradient': {
      const p = pending.get(message.id);
      pending.delete(message.id);
      if (!p) break;
      if (message.reply) {
        const r = message.reply;
        p.resolve({ ...r, gradient: Array.from(r.gradient), bnMoments: Array.from(r.bnMoments) });
      } else {
        p.reject(new Error(message.error ?? 'gradient failed'));
      }
      break;
    }
  }
  render();
}

function leave(reason = 'left from the page'): void {
  if (!worker || state.phase === 'left' || state.phase === 'leaving') return;
  state.phase = 'leaving';
  send({ type: 'leave', reason });
  render();
}

function computeGradient(input: GradientRequestInput): Promise<GradientResult> {
  if (!worker) return Promise.reject(new Error('no Web Worker is running'));
  const request: GradientRequest = {
    spec: input.spec,
    bnGroup: input.bnGroup,
    microBatch: input.microBatch,
    params: Float32Array.from(input.params),
    pixels: Uint8Array.from(input.pixels),
    labels: Uint8Array.from(input.labels),
    indices: Int32Array.from(input.indices),
    augmentSeed: input.augmentSeed,
  };
  const id = nextRequestId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    send({ type: 'gradient', id, request }, [request.params.buffer, request.pixels.buffer]);
  });
}

/** Answers weight requests that the Web Worker, gone now, never will: it holds none. */
function settleWeightRequests(): void {
  for (const resolve of pendingWeights.values()) resolve({ weights: null, factors: null });
  pendingWeights.clear();
}

/** What the Web Worker's runtime holds: its public weights and low-rank factors. */
function held(): Promise<{ weights: number[] | null; factors: number[] | null }> {
  if (!worker) return Promise.reject(new Error('no Web Worker is running'));
  const id = nextRequestId++;
  return new Promise((resolve) => {
    pendingWeights.set(id, resolve);
    send({ type: 'publicWeights', id });
  });
}

const publicWeights = async (): Promise<number[] | null> => (await held()).weights;
const lowRankFactors = async (): Promise<number[] | null> => (await held()).factors;

function main(): void {
  window.chorus = {
    get state() {
      return state;
    },
    leave,
    computeGradient,
    publicWeights,
    lowRankFactors,
  };
  let options: JoinOptions;
  try {
    options = parseJoinOptions(location);
  } catch (error) {
    fail((error as Error).message);
    return;
  }
  leaveButton.addEventListener('click', () => leave());
  document.addEventListener('visibilitychange', () => {
    state.hidden = document.visibilityState === 'hidden';
    send({ type: 'visibility', hidden: state.hidden });
    render();
  });
  // Closing the tab: say bye if the Web Worker still gets the chance (the socket closes anyway).
  window.addEventListener('pagehide', () => leave('the tab was closed'));
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'chorus-training' });
  worker.onmessage = (event: MessageEvent<WorkerToPage>) => onWorkerMessage(event.data);
  worker.onerror = (event: ErrorEvent) => {
    event.preventDefault();
    fail(`the training Web Worker failed: ${event.message || 'it could not be loaded (see the browser console)'}`);
  };
  if (!globalThis.crossOriginIsolated) log('warn', 'this page is not cross-origin isolated, so WebAssembly runs without its threaded build (replica workers still use every core)');
  send({ type: 'start', options, hidden: state.hidden });
  render();
}

main();
