import { poolMoments, simdMean, type BnMoments } from '@chorus/train/core';
import type { WeightLayout } from '@chorus/model/core';
import { fp32Codec, residentVectors, type EncodedVector, type GradientCodec, type LowRankPlan, type LowRankSide, type ShardResult } from '@chorus/protocol';

/**
 * The part of a worker's shard result that the reduction uses (the compute time is telemetry),
 * with the gradient as it came off the wire: the reducer adds it to the batch sum straight from
 * its encoding, so no shard is ever expanded into an array of its own.
 */
export type ReducibleShard = Omit<ShardResult, 'computeMs' | 'gradient'> & { gradient: EncodedVector };

export interface StepTotals {
  count: number;
  /** Examples in the shards accepted: equals count unless a shard was lost or double counted. */
  examples: number;
  shards: number;
  /** Mean gradient over the global batch. */
  gradient: Float32Array;
  loss: number;
  accuracy: number;
  /** BatchNorm moments of the whole batch. */
  bn: BnMoments;
  /** Low-rank steps: the mean projection the gradient was reconstructed from (the next factors come from it). */
  lowRankMean?: Float32Array;
}

/** What a low-rank step's reduction needs: the plan, which side is fixed, and the fixed factors. */
export interface LowRankStep {
  plan: LowRankPlan;
  side: LowRankSide;
  factors: Float32Array;
}

/**
 * The two parameter-sized arrays a step's reduction needs (the running sum and the mean), kept
 * from step to step: a coordinator reduces one step at a time, and fresh 2.3 MB arrays every
 * step only feed the garbage collector. The sum is resident in the codec kernels' memory, so
 * each gradient is added to it where it lies (only the payload is copied in); `mean` may be
 * the master state's gradient array (MasterState.gradientBuffer), which the optimizer then
 * reads where it lies too.
 */
export class ReductionBuffers {
  readonly sum: Float32Array;
  readonly mean: Float32Array;

  constructor(paramCount: number, mean: Float32Array = new Float32Array(paramCount)) {
    if (mean.length !== paramCount) throw new Error(`a mean array of ${mean.length} values for ${paramCount} parameters`);
    // Room to copy in the largest payload, an fp32 gradient.
    [this.sum] = residentVectors([paramCount], 4 * paramCount);
    this.mean = mean;
  }
}

/**
 * The reduction of one step, as a pure function of the shards received: it knows which
 * ranges of the batch are expected, accepts each range's result exactly once, and sums the
 * gradients in batch order (as a running prefix, so the work is spread over arrivals). Batch
 * order makes the sum independent of arrival order: the same shards give bit-identical
 * weights, which is what lets a re-run or a resumed run reproduce a step exactly.
 */
export class StepReducer {
  private readonly layout: WeightLayout;
  /** Expected ranges, keyed by start position. */
  private readonly ranges = new Map<number, { end: number; result: ReducibleShard | null }>();
  private readonly sum: Float32Array;
  private summedUpTo: number;
  private readonly batchStart: number;
  private readonly batchEnd: number;
  private lossSum = 0;
  private examples = 0;
  private shardsAccepted = 0;
  private correct = 0;
  private readonly moments: { start: number; part: BnMoments }[] = [];
  private readonly codec: GradientCodec;
  private readonly mean: Float32Array;
  private readonly lowRank: LowRankStep | null;

  /**
   * `codec`: the run's, which every gradient payload is in (validated already by parseMessage).
   * `buffers`: reused from the previous step (its sum is cleared here, its mean overwritten by
   * totals()), so only one reducer may use them at a time.
   */
  constructor(layout: WeightLayout, batchSize: number, codec: GradientCodec = fp32Codec, buffers = new ReductionBuffers(layout.paramCount), lowRank?: LowRankStep) {
    if (buffers.sum.length !== layout.paramCount) throw new Error(`reduction buffers of ${buffers.sum.length} values for ${layout.paramCount} parameters`);
    this.layout = layout;
    this.codec = codec;
    this.lowRank = lowRank ?? null;
    // A low-rank step sums projections, shorter than the parameters: the front of the same buffer.
    const length = lowRank ? lowRank.plan.payloadLength(lowRank.side) : layout.paramCount;
    this.sum = buffers.sum.subarray(0, length).fill(0);
    this.mean = buffers.mean;
    this.batchStart = 0;
    this.batchEnd = batchSize;
    this.summedUpTo = 0;
  }

  /** Declares a range of the batch whose result is awaited. Ranges must not overlap. */
  expect(start: number, end: number): void {
    if (start < this.batchStart || end > this.batchEnd || start >= end) throw new Error(`bad range [${start}, ${end})`);
    for (const [s, r] of this.ranges) {
      if (start < r.end && s < end) throw new Error(`range [${start}, ${end}) overlaps [${s}, ${r.end})`);
    }
    this.ranges.set(start, { end, result: null });
  }

  /** Withdraws an awaited range (its worker is gone) so it can be re-planned in pieces. */
  withdraw(start: number): void {
    const range = this.ranges.get(start);
    if (!range || range.result) throw new Error(`range at ${start} is not pending`);
    this.ranges.delete(start);
  }

  isPending(start: number): boolean {
    const range = this.ranges.get(start);
    return range !== undefined && range.result === null;
  }

  /**
   * Accepts the result for the range starting at `start`. Returns false (and changes
   * nothing) for a range that is unknown, withdrawn, or already answered.
   */
  accept(start: number, end: number, result: ReducibleShard): boolean {
    const range = this.ranges.get(start);
    if (!range || range.end !== end || range.result) return false;
    if (result.count !== end - start) throw new Error(`shard [${start}, ${end}) reported ${result.count} examples`);
    if (result.gradient.values.length !== this.sum.length) throw new Error(`shard [${start}, ${end}) sent ${result.gradient.values.length} gradient values; the step sums ${this.sum.length}`);
    range.result = result;
    this.examples += result.count;
    this.shardsAccepted++;
    this.lossSum += result.lossSum;
    this.correct += result.correct;
    this.moments.push({ start, part: { count: result.count, moments: result.bnMoments } });
    this.advance();
    return true;
  }

  /** Adds every answered range that continues the summed prefix, in batch order. */
  private advance(): void {
    for (;;) {
      const range = this.ranges.get(this.summedUpTo);
      if (!range?.result) return;
      this.codec.addTo(range.result.gradient, this.sum);
      range.result.gradient = EMPTY; // free the shard's payload early
      this.summedUpTo = range.end;
    }
  }

  get complete(): boolean {
    return this.summedUpTo === this.batchEnd;
  }

  /** Ranges awaited and not yet answered. */
  pending(): { start: number; end: number }[] {
    return [...this.ranges].filter(([, r]) => !r.result).map(([start, r]) => ({ start, end: r.end }));
  }

  /** The step's totals; only once complete. The gradient is the buffers' mean: valid until the next step's reducer. */
  totals(): StepTotals {
    if (!this.complete) throw new Error('step is not complete');
    const count = this.batchEnd - this.batchStart;
    const gradient = this.mean;
    const sum = this.sum;
    // A low-rank step's mean is a mean projection, which the step's factors turn into the gradient.
    const mean = this.lowRank ? new Float32Array(sum.length) : gradient;
    if (!simdMean(sum, count, mean)) {
      for (let i = 0; i < mean.length; i++) mean[i] = sum[i] / count;
    }
    if (this.lowRank) this.lowRank.plan.reconstruct(mean, this.lowRank.side, this.lowRank.factors, gradient);
    return {
      ...(this.lowRank ? { lowRankMean: mean } : {}),
      count,
      examples: this.examples,
      shards: this.shardsAccepted,
      gradient,
      loss: this.lossSum / count,
      accuracy: this.correct / count,
      // Pooled in batch order too, so the result does not depend on arrival order.
      bn: poolMoments(this.layout, [...this.moments].sort((a, b) => a.start - b.start).map((m) => m.part)),
    };
  }
}

const EMPTY: EncodedVector = { values: new Float32Array(0) };
