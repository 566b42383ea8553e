import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import {
  PRESETS,
  buildGraph,
  createResNetV2,
  initialBnStats,
  initialParams,
  readLayersModelWeights,
  weightLayout,
  writeLayersModelWeights,
} from '../src/index.js';

await tf.setBackend('cpu');

function randomFloats(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 32 - 0.5) * 3;
  }
  return a;
}

test('layout covers every trainable weight once, in graph order, with contiguous offsets', () => {
  const layout = weightLayout(buildGraph(PRESETS.resnet20v2));
  assert.equal(layout.paramCount, 570_602);
  assert.equal(layout.bnStatCount, 574_090 - 570_602);
  let offset = 0;
  for (const p of layout.params) {
    assert.equal(p.offset, offset);
    offset += p.size;
  }
  assert.equal(new Set(layout.params.map((p) => p.name)).size, layout.params.length);
  assert.equal(layout.params[0].name, 'stem_conv/kernel');
  assert.equal(layout.params.at(-1)!.name, 'head_dense/bias');
  assert.ok(layout.params.filter((p) => p.decay).every((p) => p.kind === 'kernel'));
});

test('flat weights round-trip through a LayersModel bit-exactly', () => {
  const spec = PRESETS.resnet20v2;
  const graph = buildGraph(spec);
  const layout = weightLayout(graph);
  const model = createResNetV2(spec, graph);
  const params = randomFloats(layout.paramCount, 1);
  params[7] = -0; // sign of zero and subnormals must survive too
  params[8] = 1e-40;
  const bnStats = randomFloats(layout.bnStatCount, 2).map(Math.abs);
  writeLayersModelWeights(model, layout, params, bnStats);
  const back = readLayersModelWeights(model, layout);
  assert.deepEqual(new Uint32Array(back.params.buffer), new Uint32Array(params.buffer));
  assert.deepEqual(new Uint32Array(back.bnStats.buffer), new Uint32Array(bnStats.buffer));
  model.dispose();
});

test('flat arrays of the wrong length are refused', () => {
  const graph = buildGraph(PRESETS.tiny);
  const layout = weightLayout(graph);
  const model = createResNetV2(PRESETS.tiny, graph);
  assert.throws(
    () => writeLayersModelWeights(model, layout, new Float32Array(3), initialBnStats(layout)),
    /params: 1578 values expected/,
  );
  model.dispose();
});

test('initial parameters are deterministic for a seed and He-scaled', () => {
  const layout = weightLayout(buildGraph(PRESETS.resnet20v2));
  const a = initialParams(layout, 7);
  const b = initialParams(layout, 7);
  const c = initialParams(layout, 8);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  const kernel = layout.params.find((p) => p.name === 's3u1_l2_conv/kernel')!;
  const view = a.subarray(kernel.offset, kernel.offset + kernel.size);
  const std = Math.sqrt(view.reduce((s, v) => s + v * v, 0) / view.length);
  const target = Math.sqrt(2 / (3 * 3 * 128));
  assert.ok(Math.abs(std - target) / target < 0.05, `std ${std} vs ${target}`);
  const gamma = layout.params.find((p) => p.kind === 'gamma')!;
  assert.ok(a.subarray(gamma.offset, gamma.offset + gamma.size).every((v) => v === 1));
  const stats = initialBnStats(layout);
  assert.equal(stats[0], 0);
  assert.equal(stats.at(-1), 1);
});
