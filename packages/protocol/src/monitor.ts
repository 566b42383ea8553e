/**
 * The monitoring contract: what the coordinator serves the dashboard at `GET /api/status` and
 * over the `/monitor` WebSocket (JSON text frames). Types only, so any page can use them.
 */

import type { BackendMeasurement } from './messages.js';

/** idle: connected and ready but holding no share of the batch (idleReason says why). */
export type WorkerState = 'training' | 'idle' | 'straggling' | 'throttled' | 'left';

export interface WorkerRow {
  id: string;
  kind: 'node' | 'browser';
  backend: string;
  device: string;
  state: WorkerState;
  /** Why an idle worker holds no share (state 'idle' only). */
  idleReason?: string;
  imagesPerSecond: number | null;
  lastLatencyMs: number | null;
  /** Examples in its last shard; its share of the batch is lastShard / batch. */
  lastShard: number | null;
  shardsDone: number;
  imagesDone: number;
  bytesIn: number | null;
  bytesOut: number | null;
  /** The backends it tried when choosing, with measured images/s (runtime.backends); [] if not sent. */
  backends: BackendMeasurement[];
}

export interface RunEvent {
  /** Epoch milliseconds. */
  time: number;
  /** join, leave, reissue, straggler, refused, checkpoint, eval, pause, resume, done, ... */
  kind: string;
  message: string;
}

export interface StepBreakdown {
  /** The critical shard's compute time. */
  computeMs: number;
  /** Its round trip minus its compute time. */
  transferMs: number;
  /** From the first shard's arrival to the last one's: waiting for stragglers. */
  waitMs: number;
  reduceMs: number;
  optimizerMs: number;
  /** Encoding and sending the update. */
  broadcastMs: number;
}

export interface StepRecord {
  step: number;
  loss: number;
  accuracy: number;
  lr: number;
  seconds: number;
  imagesPerSecond: number;
  workers: number;
  examples: number;
  shards: number;
  /** Epoch milliseconds. */
  time: number;
  perWorker: Record<string, number>;
  breakdown: StepBreakdown;
}

export interface EvalRecord {
  step: number;
  accuracy: number;
  loss: number;
  count: number;
}

export interface Status {
  preset: string;
  paramCount: number;
  batch: number;
  steps: number;
  step: number;
  epoch: number;
  paused: boolean;
  lr: number | null;
  loss: number | null;
  accuracy: number | null;
  testAccuracy: number | null;
  paramsHash: string;
  elapsedSeconds: number;
  etaSeconds: number | null;
  workers: WorkerRow[];
  events: RunEvent[];
  recentSteps: StepRecord[];
}

/** What happens during a run, as the coordinator announces it. */
export type RunUpdate =
  | { type: 'step'; step: StepRecord }
  | { type: 'eval'; eval: EvalRecord }
  | { type: 'event'; event: RunEvent };

/** A frame of the /monitor feed: the whole history on connect, then updates and status ticks. */
export type MonitorMessage =
  | { type: 'snapshot'; status: Status; steps: StepRecord[]; evals: EvalRecord[]; events: RunEvent[] }
  | RunUpdate
  | { type: 'status'; status: Status };
