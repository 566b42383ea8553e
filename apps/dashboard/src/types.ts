/**
 * What the coordinator sends the dashboard: `GET /api/status` and the `/monitor` WebSocket feed.
 * Kept here (not imported from @chorus/coordinator) so the page bundle stays free of Node code.
 */

export type WorkerState = 'training' | 'straggling' | 'throttled' | 'left';

export interface WorkerRow {
  id: string;
  kind: 'node' | 'browser';
  backend: string;
  device: string;
  state: WorkerState;
  imagesPerSecond: number | null;
  lastLatencyMs: number | null;
  /** Examples in its last shard; its share of the batch is lastShard / batch. */
  lastShard: number | null;
  shardsDone: number;
  imagesDone: number;
  bytesIn: number | null;
  bytesOut: number | null;
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

export type MonitorMessage =
  | { type: 'snapshot'; status: Status; steps: StepRecord[]; evals: EvalRecord[]; events: RunEvent[] }
  | { type: 'step'; step: StepRecord }
  | { type: 'eval'; eval: EvalRecord }
  | { type: 'event'; event: RunEvent }
  | { type: 'status'; status: Status };

export const BREAKDOWN_PARTS = [
  { key: 'computeMs', label: 'compute', color: '#3b7dd8' },
  { key: 'transferMs', label: 'transfer', color: '#8bb8f0' },
  { key: 'waitMs', label: 'wait for stragglers', color: '#e8a33d' },
  { key: 'reduceMs', label: 'reduce', color: '#5aa469' },
  { key: 'optimizerMs', label: 'optimizer', color: '#9c6ad0' },
  { key: 'broadcastMs', label: 'broadcast', color: '#d25f6a' },
] as const satisfies readonly { key: keyof StepBreakdown; label: string; color: string }[];
