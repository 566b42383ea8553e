import type { WeightLayout } from '@chorus/model/core';

/**
 * BatchNorm moments of one forward pass over `count` examples: per channel the mean and the
 * biased variance, in the layout of the running statistics (all means, then all variances).
 */
export interface BnMoments {
  count: number;
  moments: Float32Array;
}

/**
 * Pools the moments of disjoint parts of a batch into the moments of the whole batch, exactly:
 * mean = sum(n_i m_i) / N and var = sum(n_i (v_i + m_i^2)) / N - mean^2. (A count-weighted mean
 * of the variances alone would drop the spread between the parts' means.)
 */
export function poolMoments(layout: WeightLayout, parts: readonly BnMoments[]): BnMoments {
  const half = layout.bnStatCount / 2;
  const total = parts.reduce((a, p) => a + p.count, 0);
  const out = new Float32Array(layout.bnStatCount);
  if (total === 0) return { count: 0, moments: out };
  const sumMean = new Float64Array(half);
  const sumSquare = new Float64Array(half);
  for (const part of parts) {
    if (part.moments.length !== layout.bnStatCount) {
      throw new Error(`BatchNorm moments: ${layout.bnStatCount} values expected, got ${part.moments.length}`);
    }
    for (let c = 0; c < half; c++) {
      const m = part.moments[c];
      sumMean[c] += part.count * m;
      sumSquare[c] += part.count * (part.moments[half + c] + m * m);
    }
  }
  for (let c = 0; c < half; c++) {
    const mean = sumMean[c] / total;
    out[c] = mean;
    out[half + c] = Math.max(0, sumSquare[c] / total - mean * mean);
  }
  return { count: total, moments: out };
}

/** running <- momentum * running + (1 - momentum) * batch, as Keras' BatchNormalization. */
export function updateRunningStats(running: Float32Array, batch: Float32Array, momentum: number): void {
  if (running.length !== batch.length) {
    throw new Error(`running statistics: ${running.length} values expected, got ${batch.length}`);
  }
  for (let i = 0; i < running.length; i++) running[i] = momentum * running[i] + (1 - momentum) * batch[i];
}
