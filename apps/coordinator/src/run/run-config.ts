import type { CodecName } from '@chorus/protocol';
import type { TrainingConfig } from '@chorus/train/core';

/** Everything that defines a run's arithmetic; a resumed run must match it exactly. */
export interface RunConfig extends TrainingConfig {
  preset: string;
  /** Gradients up and weight updates down (--codec); absent means fp32. */
  codec?: CodecName;
  /** Low-rank gradients of this rank (--low-rank; alternating PowerSGD); absent means full gradients. */
  lowRank?: number;
}

export function codecOf(config: RunConfig): CodecName {
  return config.codec ?? 'fp32';
}

/** How the coordinator runs (may change between a run and its resumption). */
export interface RunOptions {
  minWorkers: number;
  evalEvery: number;
  evalExamples: number;
  checkpointEvery: number;
  heartbeatMs: number;
  /** A worker silent for this long is dropped. */
  heartbeatTimeoutMs: number;
  /** Floor of the adaptive per-shard deadline. */
  minDeadlineMs: number;
  /**
   * Deadline of a worker's first shard, before its speed is known: that shard also pays for
   * warm-up (kernel compilation, WebGPU pipelines, JIT), so it is not held to the others' pace.
   */
  firstShardDeadlineMs: number;
}

export const DEFAULT_RUN_OPTIONS: RunOptions = {
  minWorkers: 1,
  evalEvery: 0,
  evalExamples: 10_000,
  checkpointEvery: 100,
  heartbeatMs: 2_000,
  heartbeatTimeoutMs: 60_000,
  minDeadlineMs: 5_000,
  firstShardDeadlineMs: 60_000,
};

/** The fields that must match for --resume to continue a run. */
export function configFingerprint(config: RunConfig): Record<string, unknown> {
  // fp32 leaves the codec out, so checkpoints written before codecs existed still match; any
  // other codec changes the arithmetic and must match to resume. lowRank is absent unless set
  // (JSON drops undefined), so it only ever adds to the fingerprint.
  const { codec, ...rest } = config;
  return JSON.parse(JSON.stringify(codec && codec !== 'fp32' ? { ...rest, codec } : rest)) as Record<string, unknown>;
}
