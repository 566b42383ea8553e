import { CIFAR10 } from './cifar10.js';
import { CHANNEL_MEAN, CHANNEL_STD } from './stats.js';

/**
 * Standardizes planar uint8 images with the training-set channel stats and transposes them to
 * NHWC float32, the layout tfjs convolutions take.
 */
export function toNormalizedNHWC(pixels: Uint8Array, count: number, out?: Float32Array): Float32Array {
  const { imageBytes } = CIFAR10;
  const plane = CIFAR10.imageSize * CIFAR10.imageSize;
  if (!Number.isInteger(count) || count < 0 || pixels.length !== count * imageBytes) {
    throw new RangeError(`toNormalizedNHWC: ${pixels.length} pixel bytes do not hold ${count} images`);
  }
  const result = out ?? new Float32Array(count * imageBytes);
  if (result.length !== count * imageBytes) {
    throw new RangeError(`toNormalizedNHWC: out has ${result.length} floats, expected ${count * imageBytes}`);
  }
  const [m0, m1, m2] = CHANNEL_MEAN;
  const s0 = 1 / CHANNEL_STD[0];
  const s1 = 1 / CHANNEL_STD[1];
  const s2 = 1 / CHANNEL_STD[2];
  for (let i = 0; i < count; i++) {
    const base = i * imageBytes;
    for (let p = 0; p < plane; p++) {
      const o = base + p * 3;
      result[o] = (pixels[base + p] - m0) * s0;
      result[o + 1] = (pixels[base + plane + p] - m1) * s1;
      result[o + 2] = (pixels[base + 2 * plane + p] - m2) * s2;
    }
  }
  return result;
}
