import type { WeightLayout } from './layout.js';

/** mulberry32: a tiny seeded generator so initial weights are identical on every platform. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * He-normal initialisation (truncated at two standard deviations, as Keras' he_normal) for
 * kernels, zeros for biases and betas, ones for gammas. Deterministic for a seed.
 */
export function initialParams(layout: WeightLayout, seed: number): Float32Array {
  const flat = new Float32Array(layout.paramCount);
  const uniform = rng(seed);
  const normal = () => {
    // Box-Muller; redraw outside two sigmas (truncated normal).
    for (;;) {
      const u = 1 - uniform();
      const v = uniform();
      const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
      if (Math.abs(z) <= 2) return z;
    }
  };
  // Keras scales the truncated normal so its standard deviation is the target one.
  const truncatedStd = 0.8796256610342398;
  for (const p of layout.params) {
    const view = flat.subarray(p.offset, p.offset + p.size);
    if (p.kind === 'kernel') {
      const fanIn = p.shape.slice(0, -1).reduce((a, b) => a * b, 1);
      const std = Math.sqrt(2 / fanIn) / truncatedStd;
      for (let i = 0; i < view.length; i++) view[i] = normal() * std;
    } else if (p.kind === 'gamma') {
      view.fill(1);
    }
  }
  return flat;
}
