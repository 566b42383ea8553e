import { CIFAR10 } from './cifar10.js';
import { createRng, hash32, randomBelow } from './rng.js';

/** Zero padding on each side before the random crop, as in He et al. */
export const AUGMENT_PAD = 4;

export interface AugmentParams {
  /** Crop origin in the padded 40x40 image, each 0..2*AUGMENT_PAD. */
  cropX: number;
  cropY: number;
  flip: boolean;
}

/**
 * The random choices for one example. They depend only on (seed, exampleId), never on batch
 * position or worker, so any sharding of a batch yields the same augmented pixels.
 */
export function augmentParams(seed: number, exampleId: number): AugmentParams {
  const rng = createRng(hash32(seed, exampleId));
  const cropX = randomBelow(rng, 2 * AUGMENT_PAD + 1);
  const cropY = randomBelow(rng, 2 * AUGMENT_PAD + 1);
  const flip = rng() >>> 31 === 1;
  return { cropX, cropY, flip };
}

/**
 * Pads each planar image by 4 zero pixels, takes a random 32x32 crop and flips it horizontally
 * half of the time. Image k of `pixels` is example exampleIds[k].
 */
export function augmentShard(
  pixels: Uint8Array,
  count: number,
  exampleIds: ArrayLike<number>,
  seed: number,
  out?: Uint8Array,
): Uint8Array {
  const { imageBytes, imageSize: size } = CIFAR10;
  const plane = size * size;
  if (!Number.isInteger(count) || count < 0 || pixels.length !== count * imageBytes) {
    throw new RangeError(`augmentShard: ${pixels.length} pixel bytes do not hold ${count} images`);
  }
  if (exampleIds.length !== count) {
    throw new RangeError(`augmentShard: ${exampleIds.length} example ids for ${count} images`);
  }
  if (out !== undefined && out.length !== pixels.length) {
    throw new RangeError(`augmentShard: out has ${out.length} bytes, expected ${pixels.length}`);
  }
  if (out === pixels) throw new Error('augmentShard: out must not alias pixels');
  const result = out ?? new Uint8Array(pixels.length);
  for (let k = 0; k < count; k++) {
    const { cropX, cropY, flip } = augmentParams(seed, exampleIds[k]);
    // Output (y, x) reads padded (y + cropY, x' + cropX), x' being x or its mirror.
    const dx = cropX - AUGMENT_PAD;
    const dy = cropY - AUGMENT_PAD;
    const base = k * imageBytes;
    for (let c = 0; c < 3; c++) {
      const planeAt = base + c * plane;
      for (let y = 0; y < size; y++) {
        const row = planeAt + y * size;
        const sy = y + dy;
        if (sy < 0 || sy >= size) {
          result.fill(0, row, row + size);
          continue;
        }
        const srcRow = planeAt + sy * size;
        for (let x = 0; x < size; x++) {
          const sx = (flip ? size - 1 - x : x) + dx;
          result[row + x] = sx >= 0 && sx < size ? pixels[srcRow + sx] : 0;
        }
      }
    }
  }
  return result;
}
