import { simdAnyNonFinite } from './simd/vector-kernels.js';

/** Returns the index of the first NaN or infinite element, or -1. */
export function firstNonFinite(values: Float32Array): number {
  if (simdAnyNonFinite(values) === false) return -1;
  // x * 0 is +-0 for finite x and NaN for NaN or +-Infinity, so one branch-free pass proves a
  // clean array (the common case) about twice as fast as testing each element; only a dirty
  // one pays for the second pass that finds where.
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i] * 0;
  if (sum === 0) return -1;
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) return i;
  }
  return -1;
}
