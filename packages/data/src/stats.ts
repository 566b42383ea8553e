import { CIFAR10 } from './cifar10.js';

export type ChannelTriple = readonly [number, number, number];

/*
 * Per-channel mean and population standard deviation of the 50,000 CIFAR-10 training images,
 * in 0..255 units, computed once with computeChannelStats from the real files (the test
 * recomputes them). Baked in so browsers need not scan the training set before normalizing.
 */
export const CHANNEL_MEAN: ChannelTriple = [125.3069180469, 122.9503941406, 113.8653831836];
export const CHANNEL_STD: ChannelTriple = [62.9932192781, 62.0887076400, 66.7048996406];

/** Mean and population std per channel of planar CIFAR images. */
export function computeChannelStats(
  pixels: Uint8Array,
  count: number,
): { mean: ChannelTriple; std: ChannelTriple } {
  const { imageBytes } = CIFAR10;
  const plane = CIFAR10.imageSize * CIFAR10.imageSize;
  if (!Number.isInteger(count) || count <= 0 || pixels.length !== count * imageBytes) {
    throw new RangeError(`computeChannelStats: ${pixels.length} bytes do not hold ${count} images`);
  }
  // Integer sums stay exact in doubles (50,000 images * 1024 * 255^2 is far below 2^53).
  const sum = [0, 0, 0];
  const sumSq = [0, 0, 0];
  for (let i = 0; i < count; i++) {
    for (let c = 0; c < 3; c++) {
      const start = i * imageBytes + c * plane;
      let s = 0;
      let q = 0;
      for (let p = start; p < start + plane; p++) {
        const v = pixels[p];
        s += v;
        q += v * v;
      }
      sum[c] += s;
      sumSq[c] += q;
    }
  }
  const n = count * plane;
  const mean = sum.map((s) => s / n);
  const std = sumSq.map((q, c) => Math.sqrt(q / n - mean[c] * mean[c]));
  return { mean: [mean[0], mean[1], mean[2]], std: [std[0], std[1], std[2]] };
}
