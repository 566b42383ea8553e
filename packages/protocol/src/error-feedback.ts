import type { EncodedVector, GradientCodec } from './gradient-codec.js';
import { residentVectors, simdAddF32 } from './simd/vector-kernels.js';

/**
 * A worker's uplink encoder with error feedback: what rounding loses from one shard's gradient
 * sum is added to the next one it sends, so over steps the coordinator receives the worker's
 * true gradients to within one quantum, not a drift that grows with every step.
 *
 * The residual is in the units the worker sends, a SUM over a shard's examples. The
 * coordinator divides each step's total by the same global batch size, so a residual carried
 * into a later step weighs there exactly what it would have weighed in its own step, whatever
 * the shard sizes.
 *
 * Start it again (a new one) where its residual may belong to shards the coordinator never
 * counted (a worker that drops mid-step loses its shard to others) or to steps the run no
 * longer has (a coordinator resumed from an earlier checkpoint): carrying it would add a stale
 * gradient once, with no later step to take it back. One quantum is all that is lost by
 * dropping it. Where every shard it kept a part of is settled, it holds only what counted
 * payloads left out and may go on across a rejoin to the same run (the worker's
 * mayKeepResidual).
 *
 * fp32 keeps no residual: it is exact, and encode hands back the caller's array uncopied.
 */
export class ErrorFeedback {
  readonly codec: GradientCodec;
  readonly length: number;
  private readonly residual: Float32Array | null;
  private readonly corrected: Float32Array | null;

  constructor(codec: GradientCodec, length: number) {
    if (!Number.isSafeInteger(length) || length < 0) throw new Error(`error feedback: length must be a non-negative integer, got ${length}`);
    this.codec = codec;
    this.length = length;
    // Both resident in the codec kernels' memory, where the add and the encoding then use them
    // in place; room for the encoding's output (at most 2 bytes a value and int8's scales).
    const exact = codec.name === 'fp32';
    [this.residual, this.corrected] = exact ? [null, null] : residentVectors([length, length], 4 * length + 256);
  }

  /** Encodes `sum` plus the carried residual, and keeps what this encoding loses. */
  encode(sum: Float32Array): EncodedVector {
    if (sum.length !== this.length) throw new Error(`error feedback: ${sum.length} values; this encoder holds ${this.length}`);
    const { residual, corrected } = this;
    if (!residual || !corrected) return this.codec.encode(sum);
    corrected.set(sum);
    if (!simdAddF32(residual, corrected)) {
      for (let i = 0; i < sum.length; i++) corrected[i] += residual[i];
    }
    // The residual is what the coordinator will not decode, bit for bit (encode computes it
    // with the same expansion). A NaN in the sum travels on: the coordinator refuses it, as
    // under fp32, and the rejoin resets this.
    return this.codec.encode(corrected, residual);
  }

  /** Drops the carried residual (after a join or rejoin, see the class comment). */
  reset(): void {
    this.residual?.fill(0);
  }

  /**
   * Takes `part` back out of the carried residual: what one encode added to it, for a shard the
   * coordinator did not count (UncountedShards). No-op for fp32, which carries nothing.
   */
  withdraw(part: Float32Array): void {
    const { residual } = this;
    if (!residual) return;
    if (part.length !== residual.length) throw new Error(`error feedback: withdrawing ${part.length} values from ${residual.length}`);
    for (let i = 0; i < residual.length; i++) residual[i] -= part[i];
  }

  /** The residual carried into the next encode (read-only view, for tests and diagnostics). */
  get carried(): Float32Array | null {
    return this.residual;
  }
}

/** One-shot form: `encodeGradient(codec, sum, state)` with `state` the worker's ErrorFeedback. */
export function encodeGradient(sum: Float32Array, state: ErrorFeedback): EncodedVector {
  return state.encode(sum);
}
