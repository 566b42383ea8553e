import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHANNEL_MEAN, CHANNEL_STD, CIFAR10, computeChannelStats, toNormalizedNHWC } from '../src/index.js';
import { realCifar10 } from './support.js';

test('CHANNEL_MEAN and CHANNEL_STD match the real training set to 1e-3', async () => {
  const { train } = await realCifar10();
  const { mean, std } = computeChannelStats(train.pixels, train.count);
  for (let c = 0; c < 3; c++) {
    assert.ok(Math.abs(mean[c] - CHANNEL_MEAN[c]) < 1e-3, `mean[${c}] = ${mean[c]}, constant ${CHANNEL_MEAN[c]}`);
    assert.ok(Math.abs(std[c] - CHANNEL_STD[c]) < 1e-3, `std[${c}] = ${std[c]}, constant ${CHANNEL_STD[c]}`);
  }
});

test('toNormalizedNHWC standardizes per channel into NHWC order', () => {
  const plane = 32 * 32;
  const pixels = new Uint8Array(2 * CIFAR10.imageBytes);
  // Image 1, row 5, column 7: R=10, G=128, B=255.
  const p = 5 * 32 + 7;
  pixels[CIFAR10.imageBytes + p] = 10;
  pixels[CIFAR10.imageBytes + plane + p] = 128;
  pixels[CIFAR10.imageBytes + 2 * plane + p] = 255;
  const out = toNormalizedNHWC(pixels, 2);
  assert.equal(out.length, 2 * CIFAR10.imageBytes);
  const at = CIFAR10.imageBytes + (5 * 32 + 7) * 3;
  [10, 128, 255].forEach((v, c) => {
    assert.ok(Math.abs(out[at + c] - (v - CHANNEL_MEAN[c]) / CHANNEL_STD[c]) < 1e-5);
  });
  assert.ok(Math.abs(out[0] - -CHANNEL_MEAN[0] / CHANNEL_STD[0]) < 1e-5);

  const reused = new Float32Array(2 * CIFAR10.imageBytes);
  assert.equal(toNormalizedNHWC(pixels, 2, reused), reused);
  assert.deepEqual(reused, out);
  assert.throws(() => toNormalizedNHWC(pixels, 2, new Float32Array(10)), RangeError);
  assert.throws(() => toNormalizedNHWC(pixels, 3), RangeError);
});

test('normalized real images have about zero mean and unit variance per channel', async () => {
  const { train } = await realCifar10();
  const count = 5_000;
  const out = toNormalizedNHWC(train.pixels.subarray(0, count * CIFAR10.imageBytes), count);
  for (let c = 0; c < 3; c++) {
    let s = 0;
    let q = 0;
    for (let i = c; i < out.length; i += 3) {
      s += out[i];
      q += out[i] * out[i];
    }
    const n = out.length / 3;
    assert.ok(Math.abs(s / n) < 0.05, `channel ${c} mean ${s / n}`);
    assert.ok(Math.abs(q / n - 1) < 0.1, `channel ${c} second moment ${q / n}`);
  }
});
