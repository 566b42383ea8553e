/**
 * What the page and its Web Worker say to each other (postMessage). The Web Worker owns
 * everything that trains (tfjs, the backend, the ChorusWorker runtime, the WebSocket); the
 * page only starts it, forwards visibility and the Leave button, and shows what it reports.
 */
import type { ShardInput, WorkerStatus } from '@chorus/worker';
import type { BackendMeasurement } from '@chorus/backend';
import type { LogFields, LogLevel, ShardResult } from '@chorus/protocol';

/** The backends a tab tries, best first. */
export const BROWSER_BACKENDS = ['webgpu', 'webgl', 'wasm', 'cpu'] as const;
export type BrowserBackendName = (typeof BROWSER_BACKENDS)[number];

export interface JoinOptions {
  /** ws(s)://host/ws, derived from the page's location. */
  url: string;
  token: string;
  /** Take only this backend (?backend=...), failing visibly when it cannot be had. */
  backend: BrowserBackendName | null;
  /** ?selftest: choose a backend, then only compute gradients on request (tests); never join. */
  selftest: boolean;
  /** Most examples per forward/backward pass (?micro-batch=N); default by backend. */
  microBatch: number | null;
  /**
   * Replicas on WASM, one per Web Worker (?threads=N); default: one per core, at most
   * MAX_TAB_REPLICAS. 1 trains on the tab's own replica. Other backends keep one.
   */
  threads: number | null;
}

/** A WebGPU adapter as the browser describes it. */
export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
}

export interface BackendReport {
  name: BrowserBackendName;
  /** tf.getBackend() after the choice. */
  tfBackend: string;
  /** What computes, as sent to the coordinator in runtime.device. */
  device: string;
  adapter: AdapterDescription | null;
  microBatch: number;
  /** The other backends tried, and why each was not taken. */
  skipped: { name: BrowserBackendName; reason: string }[];
  /** Replicas that compute training shards: replica workers on WASM (?threads), else the tab's own one. */
  replicas: number;
  /** The chosen backend's measured images/s on the run's model (null when forced). */
  imagesPerSecond: number | null;
  /** Every candidate with its measured images/s, as sent to the coordinator (runtime.backends). */
  measurements: BackendMeasurement[];
}

export interface MemoryReport {
  numTensors: number;
  numBytes: number;
}

/** A shard to compute in ?selftest mode, exactly as a worker computes an `assign`. */
export interface GradientRequest extends ShardInput {
  spec: unknown;
  bnGroup: number;
  microBatch: number;
  params: Float32Array;
}

export interface GradientReply extends ShardResult {
  /** tf.memory().numTensors before and after the computation. */
  tensorsBefore: number;
  tensorsAfter: number;
}

export type PageToWorker =
  | { type: 'start'; options: JoinOptions; hidden: boolean }
  | { type: 'visibility'; hidden: boolean }
  | { type: 'leave'; reason: string }
  | { type: 'gradient'; id: number; request: GradientRequest }
  /**
   * The public weights the runtime holds under fp16/int8, and its low-rank factors in a low-rank
   * run (tests compare them with the coordinator's).
   */
  | { type: 'publicWeights'; id: number };

export type WorkerToPage =
  | { type: 'phase'; phase: 'selecting-backend' | 'selftest-ready' | 'joining' }
  | { type: 'backend'; report: BackendReport }
  | { type: 'status'; status: WorkerStatus; memory: MemoryReport; tensorsPerShard: number[] }
  | { type: 'log'; level: LogLevel; message: string; fields?: LogFields }
  /** The runtime stopped: the tab left (Leave, closed) or the run is over. */
  | { type: 'stopped'; reason: string }
  | { type: 'fatal'; error: string }
  | { type: 'gradient'; id: number; reply: GradientReply | null; error: string | null }
  | { type: 'publicWeights'; id: number; weights: Float32Array | null; factors: Float32Array | null };
