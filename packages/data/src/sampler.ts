import { createRng, hash32, randomBelow } from './rng.js';

/** Keeps the sampler's epoch streams apart from augmentation's, which also hash the seed. */
const SAMPLER_DOMAIN = 0x5eed0e0c;

export interface EpochSamplerOptions {
  datasetSize: number;
  globalBatch: number;
  seed: number;
}

/**
 * The global order of training examples: the endless concatenation of one seeded permutation
 * per epoch, cut into batches of globalBatch. A step's batch depends only on (seed, step), so a
 * resumed run or a late-joining worker computes the same batches as everyone else. A batch may
 * straddle an epoch boundary, which keeps every batch full and every epoch exactly one pass.
 */
export class EpochSampler {
  readonly datasetSize: number;
  readonly globalBatch: number;
  readonly seed: number;
  /** datasetSize / globalBatch: not an integer when batches straddle epochs. */
  readonly stepsPerEpoch: number;
  private readonly cache = new Map<number, Int32Array>();
  private readonly cacheLimit: number;

  constructor(opts: EpochSamplerOptions) {
    const { datasetSize, globalBatch, seed } = opts;
    if (!Number.isSafeInteger(datasetSize) || datasetSize <= 0) {
      throw new RangeError(`EpochSampler: datasetSize must be a positive integer, got ${datasetSize}`);
    }
    if (!Number.isSafeInteger(globalBatch) || globalBatch <= 0) {
      throw new RangeError(`EpochSampler: globalBatch must be a positive integer, got ${globalBatch}`);
    }
    if (!Number.isInteger(seed)) throw new RangeError(`EpochSampler: seed must be an integer, got ${seed}`);
    this.datasetSize = datasetSize;
    this.globalBatch = globalBatch;
    this.seed = seed >>> 0;
    this.stepsPerEpoch = datasetSize / globalBatch;
    // Enough permutations for one batch (a batch larger than the dataset spans several), plus one.
    this.cacheLimit = Math.max(2, Math.ceil(globalBatch / datasetSize) + 1);
  }

  /** Dataset indices of the examples of global step `step` (0-based). */
  indicesForStep(step: number): Int32Array {
    this.checkStep(step);
    const n = this.datasetSize;
    const out = new Int32Array(this.globalBatch);
    let position = step * this.globalBatch;
    let filled = 0;
    while (filled < out.length) {
      const epoch = Math.floor(position / n);
      const offset = position - epoch * n;
      const take = Math.min(out.length - filled, n - offset);
      out.set(this.permutation(epoch).subarray(offset, offset + take), filled);
      filled += take;
      position += take;
    }
    return out;
  }

  /** The epoch of the step's first example. */
  epochOf(step: number): number {
    this.checkStep(step);
    return Math.floor((step * this.globalBatch) / this.datasetSize);
  }

  private checkStep(step: number): void {
    if (!Number.isSafeInteger(step) || step < 0 || !Number.isSafeInteger((step + 1) * this.globalBatch)) {
      throw new RangeError(`EpochSampler: step must be a non-negative integer, got ${step}`);
    }
  }

  private permutation(epoch: number): Int32Array {
    const cached = this.cache.get(epoch);
    if (cached !== undefined) return cached;
    const n = this.datasetSize;
    const perm = new Int32Array(n);
    for (let i = 0; i < n; i++) perm[i] = i;
    const rng = createRng(hash32(this.seed ^ SAMPLER_DOMAIN, epoch));
    for (let i = n - 1; i > 0; i--) {
      const j = randomBelow(rng, i + 1);
      const t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    if (this.cache.size >= this.cacheLimit) {
      // Evict the epoch farthest from this one: steps mostly move forward, one epoch at a time.
      let farthest = epoch;
      for (const e of this.cache.keys()) if (Math.abs(e - epoch) > Math.abs(farthest - epoch)) farthest = e;
      this.cache.delete(farthest);
    }
    this.cache.set(epoch, perm);
    return perm;
  }
}
