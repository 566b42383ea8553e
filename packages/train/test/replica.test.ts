import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { PRESETS, initialBnStats, initialParams } from '@chorus/model';
import { Replica, poolMoments } from '../src/index.js';

await tf.setBackend('cpu');
const spec = PRESETS.tiny;
const imageSize = 32 * 32 * 3;

function shard(count: number, seed: number): { images: Float32Array; labels: Uint8Array } {
  let s = seed;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const images = new Float32Array(count * imageSize).map(() => next() * 2 - 1);
  const labels = new Uint8Array(count).map(() => Math.floor(next() * 10));
  return { images, labels };
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

test('micro-batching gives the same gradient as one batch (cuts at BatchNorm group boundaries)', async () => {
  const params = initialParams(new Replica(spec, { microBatch: 1, bnGroup: 1 }).layout, 1);
  const { images, labels } = shard(24, 3);
  const whole = new Replica(spec, { microBatch: 24, bnGroup: 4 });
  const micro = new Replica(spec, { microBatch: 9, bnGroup: 4 }); // rounds down to 8
  whole.setParams(params);
  micro.setParams(params);
  assert.deepEqual(micro.chunks(24), [[0, 8], [8, 16], [16, 24]]);
  const a = await whole.computeGradients(images, labels);
  const b = await micro.computeGradients(images, labels);
  // Only the summation order differs: float32 rounding, ~1e-6 relative.
  assert.ok(relDiff(b.gradient, a.gradient) < 1e-5, `rel diff ${relDiff(b.gradient, a.gradient)}`);
  assert.ok(Math.abs(a.lossSum - b.lossSum) < 1e-4 * a.lossSum);
  assert.equal(a.correct, b.correct);
  assert.ok(relDiff(b.bn.moments, a.bn.moments) < 1e-5);
  whole.dispose();
  micro.dispose();
});

test('shards add up: the sum of two shards equals the gradient of their union', async () => {
  const replica = new Replica(spec, { microBatch: 64, bnGroup: 4 });
  replica.setParams(initialParams(replica.layout, 2));
  const { images, labels } = shard(12, 5);
  const all = await replica.computeGradients(images, labels);
  const first = await replica.computeGradients(images.subarray(0, 8 * imageSize), labels.subarray(0, 8));
  const second = await replica.computeGradients(images.subarray(8 * imageSize), labels.subarray(8));
  const sum = first.gradient.map((g, i) => g + second.gradient[i]);
  assert.ok(relDiff(sum, all.gradient) < 1e-5);
  assert.equal(first.count + second.count, 12);
  const pooled = poolMoments(replica.layout, [first.bn, second.bn]);
  assert.ok(relDiff(pooled.moments, all.bn.moments) < 1e-5);
  replica.dispose();
});

test('a trailing partial group is its own micro-batch', () => {
  const replica = new Replica(spec, { microBatch: 8, bnGroup: 4 });
  assert.deepEqual(replica.chunks(14), [[0, 8], [8, 12], [12, 14]]);
  assert.deepEqual(replica.chunks(3), [[0, 3]]);
  replica.dispose();
});

test('gradient descent on the replica lowers the loss of a fixed batch', async () => {
  const replica = new Replica(spec, { microBatch: 32, bnGroup: 16 });
  const params = initialParams(replica.layout, 9);
  const { images, labels } = shard(16, 7);
  replica.setParams(params);
  const before = await replica.computeGradients(images, labels);
  for (let i = 0; i < params.length; i++) params[i] -= (0.05 * before.gradient[i]) / 16;
  replica.setParams(params);
  const after = await replica.computeGradients(images, labels);
  assert.ok(after.lossSum < before.lossSum, `${after.lossSum} !< ${before.lossSum}`);
  const evalResult = await replica.evaluate(images, labels, initialBnStats(replica.layout));
  assert.equal(evalResult.count, 16);
  assert.ok(evalResult.correct >= 0 && evalResult.correct <= 16 && Number.isFinite(evalResult.lossSum));
  replica.dispose();
});

test('bad shards are refused with a clear error and no tensors leak', async () => {
  const replica = new Replica(spec, { microBatch: 8, bnGroup: 4 });
  replica.setParams(initialParams(replica.layout, 1));
  const before = tf.memory().numTensors;
  await assert.rejects(replica.computeGradients(new Float32Array(5), new Uint8Array(1)), /1 labels need 3072 pixel values/);
  await assert.rejects(replica.computeGradients(new Float32Array(imageSize), new Uint8Array([10])), /label 10/);
  const { images, labels } = shard(8, 1);
  await replica.computeGradients(images, labels);
  await replica.evaluate(images, labels, initialBnStats(replica.layout));
  assert.equal(tf.memory().numTensors, before);
  assert.throws(() => replica.setParams(new Float32Array(2)), /values expected/);
  replica.dispose();
});
