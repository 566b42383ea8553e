/*
 * Integer-only hashing and random numbers. Everything goes through Math.imul and 32-bit
 * bit operations, never floats, so every JS engine (browser tab or Node worker) produces
 * the same bits: that is what makes data order and augmentation reproducible across devices.
 */

const GOLDEN = 0x9e3779b9;

/** MurmurHash3's finalizer: a bijection on uint32 with full avalanche. */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Hashes two integers into one uint32; for either argument fixed it is a bijection in the other. */
export function hash32(a: number, b: number): number {
  return mix32(mix32((a ^ GOLDEN) >>> 0) ^ (b >>> 0));
}

/** splitmix32: a Weyl sequence through mix32. Returns a deterministic stream of uint32. */
export function createRng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + GOLDEN) >>> 0;
    return mix32(state);
  };
}

const TWO_32 = 4294967296;

/** Uniform integer in [0, n) from a uint32 stream, by rejection so no value is favoured. */
export function randomBelow(rng: () => number, n: number): number {
  if (!Number.isInteger(n) || n <= 0 || n > TWO_32) {
    throw new RangeError(`randomBelow: n must be an integer in 1..2^32, got ${n}`);
  }
  const limit = TWO_32 - (TWO_32 % n);
  let r = rng();
  while (r >= limit) r = rng();
  return r % n;
}
