import type { CodecName, CodecValues } from './gradient-codec.js';

/**
 * The Chorus wire protocol: one message per binary WebSocket frame. Typed arrays travel as
 * raw, 4-byte-aligned tails after a msgpack header (see codec.ts), so a gradient is never
 * copied into or out of msgpack.
 *
 * A step, seen from one worker:
 *   worker -> hello            coordinator -> welcome (run description, full weights)
 *   coordinator -> assign      worker -> gradient        (one per shard of the step)
 *   coordinator -> update      (new weights for the next step; the next assign follows)
 *   coordinator -> evaluate    worker -> evalResult      (test-set shards, BN in inference mode)
 *   either -> heartbeat; either -> bye (leaving cleanly); coordinator -> error (then closes)
 */
export const PROTOCOL_VERSION = 1;

/** What the worker runs on, reported in hello and shown on the dashboard. */
export interface WorkerRuntime {
  kind: 'node' | 'browser';
  /** tfjs backend name: 'tensorflow', 'webgpu', 'webgl', 'wasm', 'cpu'. */
  backend: string;
  /** GPU adapter or CPU description. */
  device: string;
  cores: number;
  /** Most examples the worker runs through the model at once (it micro-batches above). */
  microBatch: number;
  /** Free text: user agent, hostname, ... */
  agent: string;
  /**
   * The backends the worker tried when it chose, with each one's measured training speed and
   * why it was not used (shown on the dashboard). Optional: older workers do not send it.
   */
  backends?: BackendMeasurement[];
}

/** One candidate backend of a worker's choice (runtime.backends). */
export interface BackendMeasurement {
  name: string;
  /** Measured images/s of a training step; null when it failed or was not measured. */
  imagesPerSecond: number | null;
  /** Why it was not used; absent on the chosen one. */
  skipped?: string;
}

export interface RunDescription {
  /** Preset name, for display. */
  preset: string;
  /** The full model spec (JSON), so a worker builds exactly the coordinator's model. */
  spec: unknown;
  paramCount: number;
  bnStatCount: number;
  bnGroup: number;
  /**
   * Codec of gradients up and weight deltas down (gradient-codec.ts). fp32: gradients raw,
   * every update the full weights. fp16, int8: gradients compressed (with error feedback on the
   * worker), updates a compressed delta against the public weights every worker holds.
   */
  codec: CodecName;
  /**
   * Low-rank gradients (alternating PowerSGD, low-rank.ts) of this rank, when set: a worker sends
   * its gradient's projection onto the step's fixed factors, in the run's codec.
   */
  lowRank?: number;
  heartbeatMs: number;
}

export interface Hello {
  type: 'hello';
  v: number;
  token: string;
  runtime: WorkerRuntime;
  /** Set when reconnecting, so the coordinator can recognise the worker. */
  workerId?: string;
  /**
   * What this build speaks beyond protocol version 1's first form (WORKER_FEATURES). A run
   * that needs a feature refuses a worker that does not list it, with a close code every build
   * treats as final, where it would otherwise be refused step after step and reconnect for ever.
   */
  features?: string[];
}

/**
 * The features this build's workers speak: `low-rank` is a run's `lowRank` (low-rank.ts), whose
 * gradients are projections and whose welcome and updates carry factors. A build that predates
 * a feature reads those fields as absent and would send gradients the run cannot use.
 */
export const WORKER_FEATURES = ['low-rank'] as const;
export type WorkerFeature = (typeof WORKER_FEATURES)[number];

export interface Welcome {
  type: 'welcome';
  v: number;
  workerId: string;
  run: RunDescription;
  /** Number of updates applied to the master weights so far. */
  version: number;
  params: Float32Array;
  bnStats: Float32Array;
  /** Low-rank runs: the fixed factors of the step at `version` (low-rank.ts). */
  factors?: Float32Array;
}

export interface Assign {
  type: 'assign';
  v: number;
  step: number;
  /** Weights version the gradient must be computed at. */
  version: number;
  shardId: number;
  /** Dataset indices of the shard's examples (also the augmentation's example ids). */
  indices: Int32Array;
  labels: Uint8Array;
  /** 3072 bytes per example, CIFAR-10 file order (R, G, B planes). */
  pixels: Uint8Array;
  augmentSeed: number;
}

/**
 * What a worker computes for one shard, on any platform: sums over the shard's examples, so
 * the coordinator adds shards up in batch order.
 */
export interface ShardResult {
  count: number;
  lossSum: number;
  correct: number;
  /** Milliseconds the worker spent computing (for load balancing and the dashboard). */
  computeMs: number;
  /** Sum over the shard of per-example gradients (codec-encoded; fp32: raw floats). */
  gradient: Float32Array;
  /** Pooled BatchNorm moments of the shard: all means, then all biased variances. */
  bnMoments: Float32Array;
}

export interface GradientMessage extends Omit<ShardResult, 'gradient'> {
  type: 'gradient';
  v: number;
  step: number;
  shardId: number;
  /** The shard's gradient sum, encoded by the run's codec: f32 (fp32), u16 half bits (fp16), i8 quanta (int8). */
  gradient: CodecValues;
  /** int8 only: one float32 scale per block of INT8_BLOCK values. */
  scales?: Float32Array;
}

export interface Update {
  type: 'update';
  v: number;
  /** New weights version (= number of updates applied). */
  version: number;
  /** fp32 runs: the full weights. Exactly one of params and delta is present. */
  params?: Float32Array;
  /**
   * fp16 and int8 runs: what to add to the public weights held since the previous version,
   * encoded by the run's codec (u16 half bits or i8 quanta); see public-weights.ts.
   */
  delta?: CodecValues;
  /** int8 delta only: one float32 scale per block of INT8_BLOCK values. */
  scales?: Float32Array;
  /** BatchNorm running statistics, always in full fp32 (they are small). */
  bnStats: Float32Array;
  /** Low-rank runs: the fixed factors of the next step (the step at `version`; low-rank.ts). */
  factors?: Float32Array;
  /**
   * The ids of the shards whose gradients this update applied (a coordinator process never
   * reuses a shard id; a worker clears its ledger at every welcome, so ids need not outlive one). A worker that sent a gradient for the step under another id (a late reply to a shard
   * given to someone else, or a duplicate) takes back what its error feedback kept of it: that
   * shard's examples were counted in the other worker's gradient, so its residual must not carry
   * them into a later step a second time. Absent from older coordinators: then everything counts.
   */
  counted?: Int32Array;
}

export interface Evaluate {
  type: 'evaluate';
  v: number;
  evalId: number;
  shardId: number;
  version: number;
  labels: Uint8Array;
  pixels: Uint8Array;
}

export interface EvalResult {
  type: 'evalResult';
  v: number;
  evalId: number;
  shardId: number;
  count: number;
  lossSum: number;
  correct: number;
}

export interface Heartbeat {
  type: 'heartbeat';
  v: number;
  /** Sender's clock, milliseconds. */
  time: number;
  /** Browser tabs report when they are hidden or throttled. */
  hidden?: boolean;
}

export interface ErrorMessage {
  type: 'error';
  v: number;
  code: ErrorCode;
  message: string;
}

export interface Bye {
  type: 'bye';
  v: number;
  reason: string;
}

export type ErrorCode =
  | 'bad-token'
  | 'bad-version'
  | 'malformed'
  | 'unknown-type'
  | 'bad-gradient'
  | 'too-large'
  | 'timeout'
  | 'internal';

export type Message =
  | Hello
  | Welcome
  | Assign
  | GradientMessage
  | Update
  | Evaluate
  | EvalResult
  | Heartbeat
  | ErrorMessage
  | Bye;

export type MessageType = Message['type'];

export const MESSAGE_TYPES: readonly MessageType[] = [
  'hello',
  'welcome',
  'assign',
  'gradient',
  'update',
  'evaluate',
  'evalResult',
  'heartbeat',
  'error',
  'bye',
];

/** WebSocket close codes Chorus uses (4000-4999 is the application range). */
export const CLOSE_CODES = {
  normal: 1000,
  tooLarge: 1009,
  badToken: 4001,
  badVersion: 4002,
  malformed: 4003,
  badGradient: 4004,
  replaced: 4005,
  shutdown: 4006,
  /** No valid hello in time (the worker reconnects). */
  timeout: 4007,
} as const;

export const ERROR_CODES = [
  'bad-token',
  'bad-version',
  'malformed',
  'unknown-type',
  'bad-gradient',
  'too-large',
  'timeout',
  'internal',
] as const satisfies readonly ErrorCode[];

// Fails to compile if an ErrorCode is added above without being listed in ERROR_CODES.
const _everyErrorCodeListed: Record<Exclude<ErrorCode, (typeof ERROR_CODES)[number]>, never> = {};
void _everyErrorCodeListed;
