import type { ResNetV2Spec } from '@chorus/model';

/** Main thread -> replica thread. */
export type ToThread = {
  type: 'compute';
  id: number;
  /** Sent when the model changed since this thread's last job. */
  model?: { spec: ResNetV2Spec; bnGroup: number; microBatch: number };
  /** Sent when the weights changed since this thread's last job. */
  params?: Float32Array;
  /** This thread's slice of the shard: whole micro-batches, in shard order. */
  pixels: Uint8Array;
  labels: Uint8Array;
  indices: Int32Array;
  augmentSeed: number;
  /** Micro-batches relative to the slice. */
  ranges: [number, number][];
};

/** Replica thread -> main thread. */
export type FromThread =
  | { type: 'ready' }
  | { type: 'failed'; error: string }
  | { type: 'sums'; id: number; sums: Float32Array[] }
  | { type: 'error'; id: number; error: string };

export interface ThreadData {
  backend: 'wasm' | 'cpu';
}
