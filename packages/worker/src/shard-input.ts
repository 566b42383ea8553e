import { augmentShard, toNormalizedNHWC } from '@chorus/data';

/**
 * Turns a shard's raw pixels into model input. The augmentation of each example depends only
 * on (seed, example index), so every worker produces the same pixels for the same example.
 */
export function shardImages(pixels: Uint8Array, indices: Int32Array | null, augmentSeed: number | null): Float32Array {
  const count = pixels.length / 3072;
  const source = indices && augmentSeed !== null ? augmentShard(pixels, count, indices, augmentSeed) : pixels;
  return toNormalizedNHWC(source, count);
}
