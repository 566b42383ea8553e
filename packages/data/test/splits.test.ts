import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CIFAR10, concatSplits, gatherExamples, type Cifar10Split } from '../src/index.js';
import { realCifar10 } from './support.js';

const { imageBytes } = CIFAR10;

function image(split: Cifar10Split, i: number): Uint8Array {
  return split.pixels.subarray(i * imageBytes, (i + 1) * imageBytes);
}

test('gatherExamples copies the chosen examples in the given order', async () => {
  const { train } = await realCifar10();
  const indices = [49_999, 0, 12_345, 0];
  const shard = gatherExamples(train, Int32Array.from(indices));
  assert.equal(shard.count, 4);
  assert.equal(shard.pixels.length, 4 * imageBytes);
  indices.forEach((i, k) => {
    assert.equal(shard.labels[k], train.labels[i]);
    assert.deepEqual(image(shard, k), image(train, i));
  });
  shard.pixels[0] ^= 0xff;
  assert.notEqual(shard.pixels[0], train.pixels[49_999 * imageBytes], 'the shard is a copy');
});

test('gatherExamples range-checks its indices', async () => {
  const { test: testSplit } = await realCifar10();
  assert.throws(() => gatherExamples(testSplit, [0, 10_000]), /indices\[1\] = 10000 is outside 0\.\.9999/);
  assert.throws(() => gatherExamples(testSplit, [-1]), RangeError);
  assert.throws(() => gatherExamples(testSplit, [1.5]), RangeError);
  assert.equal(gatherExamples(testSplit, []).count, 0);
});

test('concatSplits joins splits end to end', async () => {
  const { test: testSplit } = await realCifar10();
  const a = gatherExamples(testSplit, [0, 1, 2]);
  const b = gatherExamples(testSplit, [3]);
  const joined = concatSplits([a, concatSplits([]), b]);
  assert.deepEqual(joined, gatherExamples(testSplit, [0, 1, 2, 3]));
  assert.throws(() => concatSplits([{ count: 2, labels: new Uint8Array(1), pixels: new Uint8Array(2 * imageBytes) }]));
});
