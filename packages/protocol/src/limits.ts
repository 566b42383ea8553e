import type { LowRankPlan } from './low-rank.js';
import type { CodecName } from './gradient-codec.js';

/**
 * Bounds on what a peer may send. They exist so a buggy or hostile peer is refused at the
 * frame boundary, before its numbers size an allocation or reach the training state.
 */

/**
 * Default cap on one frame: room for the largest Chorus message (full weights, ~2.3 MB for the
 * default ResNet, or an assign of a few thousand 3 KB images) many times over, yet small enough
 * that one frame cannot exhaust a coordinator. Servers should also give it to `ws` as
 * `maxPayload`, so an oversized frame is refused before it is even buffered.
 */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** Bytes per CIFAR-10 example on the wire: 32 x 32 pixels x 3 channel planes. */
export const EXAMPLE_BYTES = 3072;
/** CIFAR-10 classes; a label outside 0..9 would index past the logits. */
export const NUM_CLASSES = 10;

/** Longest strings accepted, in UTF-16 code units (JavaScript string length). */
export const STRING_LIMITS = {
  token: 256,
  /** Each text field of WorkerRuntime. */
  runtime: 512,
  workerId: 128,
  /** Free text: reasons, error messages, preset names. */
  text: 1024,
} as const;

/** Bounds on WorkerRuntime numbers: generous, but a typo like 1e9 cores is refused. */
export const RUNTIME_LIMITS = {
  maxCores: 4096,
  maxMicroBatch: 65536,
} as const;

/** Deepest nesting accepted in run.spec, which is JSON describing the model. */
export const MAX_SPEC_DEPTH = 64;

/** The highest low-rank (PowerSGD) rank a run may name: past it the projection saves little. */
export const MAX_LOW_RANK = 64;

/**
 * What the receiver knows about the current run, checked against sizes in the message. Each
 * is optional: a worker knows nothing until its welcome, and welcome carries its own sizes.
 */
export interface ValidationLimits {
  /** The run's codec: gradients and update deltas in another codec's dtype are refused. */
  codec?: CodecName;
  /** gradient.gradient and update.params must have exactly this many elements. */
  paramCount?: number;
  /**
   * Low-rank runs: a gradient is its step's projection (payloadLength of the step's side, not
   * paramCount long) and every update carries the next step's factors (factorLength).
   */
  lowRank?: LowRankPlan;
  /** gradient.bnMoments and update.bnStats must have exactly this many elements. */
  bnStatCount?: number;
  /** Most examples in one assign or evaluate shard, and in a gradient's or evalResult's count. */
  maxShardExamples?: number;
  /** Frames above this are refused as 'too-large'; default MAX_FRAME_BYTES. */
  maxFrameBytes?: number;
}

/** hello.features: a short list of short lower-case ASCII names (a-z, 0-9, '-'). */
export const FEATURE_LIMITS = { maxEntries: 16, name: 32 } as const;
