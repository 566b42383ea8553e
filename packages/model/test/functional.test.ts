import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import {
  PRESETS,
  buildGraph,
  createResNetV2,
  forward,
  initialParams,
  paramTensors,
  weightLayout,
  writeLayersModelWeights,
} from '../src/index.js';

await tf.setBackend('cpu');

const spec = PRESETS.tiny;
const graph = buildGraph(spec);
const layout = weightLayout(graph);

function randomInput(n: number, seed: number): tf.Tensor4D {
  return tf.randomNormal([n, ...spec.inputShape], 0, 1, 'float32', seed) as tf.Tensor4D;
}

function maxRelDiff(a: Float32Array | Int32Array | Uint8Array, b: Float32Array | Int32Array | Uint8Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

test('functional forward with running statistics equals LayersModel.predict', () => {
  const params = initialParams(layout, 3);
  // Non-trivial running statistics, so a wrong BN formula cannot pass.
  const stats = new Float32Array(layout.bnStatCount).map((_, i) => (i < layout.bnStatCount / 2 ? 0.1 * Math.sin(i) : 0.5 + 0.25 * Math.cos(i) ** 2));
  const model = createResNetV2(spec, graph);
  writeLayersModelWeights(model, layout, params, stats);
  const x = randomInput(4, 11);
  const expected = (model.predict(x) as tf.Tensor).dataSync() as Float32Array;
  const tensors = paramTensors(layout, params);
  const { logits } = forward(graph, layout, tensors, x, { kind: 'running', stats });
  const got = tf.softmax(logits).dataSync() as Float32Array;
  assert.ok(maxRelDiff(got, expected) < 1e-5, `max rel diff ${maxRelDiff(got, expected)}`);
  model.dispose();
  tf.dispose([x, logits, ...tensors]);
});

test('functional forward in batch mode equals the LayersModel in training mode and reports batch statistics', () => {
  const params = initialParams(layout, 4);
  const model = createResNetV2(spec, graph);
  writeLayersModelWeights(model, layout, params, new Float32Array(layout.bnStatCount).fill(1));
  const x = randomInput(6, 12);
  const expected = (model.apply(x, { training: true }) as tf.Tensor).dataSync() as Float32Array;
  const tensors = paramTensors(layout, params);
  const { logits, batchStats } = forward(graph, layout, tensors, x, { kind: 'batch', groupSize: 64 });
  const got = tf.softmax(logits).dataSync() as Float32Array;
  assert.ok(maxRelDiff(got, expected) < 1e-4, `max rel diff ${maxRelDiff(got, expected)}`);
  assert.equal(batchStats.length, layout.bn.length);
  // The stem BN sees the stem conv output: check its statistics directly.
  const stemConv = tf.conv2d(x, tensors[0] as tf.Tensor4D, 1, 'same').add(tensors[1]);
  const { mean, variance } = tf.moments(stemConv, [0, 1, 2]);
  assert.ok(maxRelDiff(batchStats[0].mean.dataSync() as Float32Array, mean.dataSync() as Float32Array) < 1e-5);
  assert.ok(maxRelDiff(batchStats[0].variance.dataSync() as Float32Array, variance.dataSync() as Float32Array) < 1e-5);
  model.dispose();
});

test('gradients match central finite differences (tiny preset, batch-statistics BN)', () => {
  const params = initialParams(layout, 5);
  const x = randomInput(4, 13);
  const labels = tf.oneHot(tf.tensor1d([1, 3, 5, 7], 'int32'), spec.classes);
  const lossOf = (flat: Float32Array) =>
    tf.tidy(() => {
      const ts = paramTensors(layout, flat);
      const { logits } = forward(graph, layout, ts, x, { kind: 'batch', groupSize: 64 });
      return tf.sum(tf.mul(labels, tf.neg(tf.logSoftmax(logits)))).dataSync()[0];
    });
  const tensors = paramTensors(layout, params);
  const grads = tf.grads((...ps: tf.Tensor[]) => {
    const { logits } = forward(graph, layout, ps, x, { kind: 'batch', groupSize: 64 });
    return tf.sum(tf.mul(labels, tf.neg(tf.logSoftmax(logits))));
  })(tensors);
  const analytic = new Float32Array(layout.paramCount);
  layout.params.forEach((p, i) => analytic.set(grads[i].dataSync() as Float32Array, p.offset));
  // Check a spread of coordinates: one from every parameter tensor plus the largest gradients.
  const coords = new Set<number>(layout.params.map((p) => p.offset + (p.size >> 1)));
  [...analytic.keys()].sort((a, b) => Math.abs(analytic[b]) - Math.abs(analytic[a])).slice(0, 10).forEach((i) => coords.add(i));
  const eps = 1e-3;
  let checked = 0;
  for (const i of coords) {
    const plus = params.slice();
    plus[i] += eps;
    const minus = params.slice();
    minus[i] -= eps;
    const numeric = (lossOf(plus) - lossOf(minus)) / (2 * eps);
    // A float32 loss of ~10 carries ~1e-6 rounding; divided by 2*eps that is ~1e-3 absolute
    // noise. Batch-statistics BN over 4 examples is strongly curved, so eps cannot be larger
    // (at 1e-2 the O(eps^2) term alone is 4%). 3e-3 absolute + 3% relative covers both and
    // still fails on a wrong gradient, which is off by O(1).
    const tol = 3e-3 + 0.03 * Math.abs(numeric);
    assert.ok(Math.abs(numeric - analytic[i]) <= tol, `param ${i}: numeric ${numeric} vs analytic ${analytic[i]}`);
    checked++;
  }
  assert.ok(checked >= layout.params.length);
});

test('ghost BatchNorm: a batch of whole groups computes each group as if it were alone', () => {
  const params = initialParams(layout, 6);
  const tensors = paramTensors(layout, params);
  const x = randomInput(8, 14);
  const [a, b] = tf.split(x, 2);
  const whole = forward(graph, layout, tensors, x, { kind: 'batch', groupSize: 4 });
  const first = forward(graph, layout, tensors, a as tf.Tensor4D, { kind: 'batch', groupSize: 4 });
  const second = forward(graph, layout, tensors, b as tf.Tensor4D, { kind: 'batch', groupSize: 4 });
  const expected = tf.concat([first.logits, second.logits]).dataSync() as Float32Array;
  assert.ok(maxRelDiff(whole.logits.dataSync() as Float32Array, expected) < 1e-5);
  // With one group of 8 the result differs: the grouping really changes the statistics.
  const single = forward(graph, layout, tensors, x, { kind: 'batch', groupSize: 8 });
  assert.ok(maxRelDiff(single.logits.dataSync() as Float32Array, expected) > 1e-3);
  // Reported statistics are those of the whole batch: the two groups' moments pooled.
  for (let i = 0; i < layout.bn.length; i++) {
    const [m1, v1, m2, v2] = [first.batchStats[i].mean, first.batchStats[i].variance, second.batchStats[i].mean, second.batchStats[i].variance];
    const mean = tf.div(tf.add(m1, m2), 2);
    const variance = tf.sub(tf.div(tf.add(tf.add(v1, tf.square(m1)), tf.add(v2, tf.square(m2))), 2), tf.square(mean));
    assert.ok(maxRelDiff(whole.batchStats[i].mean.dataSync() as Float32Array, mean.dataSync() as Float32Array) < 1e-4);
    assert.ok(maxRelDiff(whole.batchStats[i].variance.dataSync() as Float32Array, variance.dataSync() as Float32Array) < 1e-4);
  }
  assert.throws(() => forward(graph, layout, tensors, randomInput(6, 1), { kind: 'batch', groupSize: 4 }), /not a whole number of BatchNorm groups/);
});
