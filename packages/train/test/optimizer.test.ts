import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PRESETS, buildGraph, weightLayout } from '@chorus/model';
import { createAdam, createSgd, decayMask, learningRate, scaledLr } from '../src/index.js';

const layout = weightLayout(buildGraph(PRESETS.tiny));
const P = layout.paramCount;
const kernelIndex = layout.params.find((p) => p.kind === 'kernel')!.offset;
const biasIndex = layout.params.find((p) => p.kind === 'bias')!.offset;

test('SGD with Nesterov momentum follows the PyTorch update rule', () => {
  const sgd = createSgd(layout, { momentum: 0.9, nesterov: true, weightDecay: 0 });
  const params = new Float32Array(P).fill(1);
  const grad = new Float32Array(P).fill(1);
  sgd.apply(params, grad, 0.1);
  // v = 1; p = 1 - 0.1 * (1 + 0.9 * 1)
  assert.ok(Math.abs(params[0] - 0.81) < 1e-6);
  sgd.apply(params, grad, 0.1);
  // v = 0.9 + 1 = 1.9; p = 0.81 - 0.1 * (1 + 0.9 * 1.9)
  assert.ok(Math.abs(params[0] - (0.81 - 0.1 * 2.71)) < 1e-6);
});

test('weight decay applies to kernels only', () => {
  const mask = decayMask(layout);
  assert.equal(mask[kernelIndex], 1);
  assert.equal(mask[biasIndex], 0);
  const sgd = createSgd(layout, { momentum: 0, nesterov: false, weightDecay: 0.5 });
  const params = new Float32Array(P).fill(2);
  sgd.apply(params, new Float32Array(P), 0.1);
  assert.ok(Math.abs(params[kernelIndex] - (2 - 0.1 * 0.5 * 2)) < 1e-6);
  assert.equal(params[biasIndex], 2);
});

test('optimizer state round-trips, so a resumed run continues identically', () => {
  for (const make of [
    () => createSgd(layout, { momentum: 0.9, nesterov: true, weightDecay: 5e-4 }),
    () => createAdam(layout, { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 1e-4 }),
  ]) {
    const a = make();
    const params = new Float32Array(P).map((_, i) => Math.sin(i));
    const grad = new Float32Array(P).map((_, i) => Math.cos(i));
    a.apply(params, grad, 0.05);
    const b = make();
    b.load(a.state());
    const pa = params.slice();
    const pb = params.slice();
    a.apply(pa, grad, 0.05);
    b.apply(pb, grad, 0.05);
    assert.deepEqual(pa, pb);
  }
  const sgd = createSgd(layout, { momentum: 0.9, nesterov: true, weightDecay: 0 });
  assert.throws(() => sgd.load({ kind: 'adam', updates: 1, slots: [] }), /not belong to an SGD/);
  assert.throws(() => sgd.apply(new Float32Array(3), new Float32Array(3), 0.1), /values expected/);
});

test('Adam takes a first step of about lr in the direction of -sign(g)', () => {
  const adam = createAdam(layout, { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 });
  const params = new Float32Array(P);
  const grad = new Float32Array(P).map((_, i) => (i % 2 ? 3 : -0.01));
  adam.apply(params, grad, 0.01);
  assert.ok(Math.abs(params[1] + 0.01) < 1e-6);
  assert.ok(Math.abs(params[0] - 0.01) < 1e-5);
});

test('learning rate: linear warm-up, linear scaling rule, cosine and step decay', () => {
  assert.equal(scaledLr(0.1, 256), 0.2);
  const opts = { baseLr: 0.1, batch: 128, warmupSteps: 10, totalSteps: 110, kind: 'cosine' as const };
  assert.ok(Math.abs(learningRate(opts, 0) - 0.01) < 1e-12);
  assert.ok(Math.abs(learningRate(opts, 9) - 0.1) < 1e-12);
  assert.ok(Math.abs(learningRate(opts, 60) - 0.05) < 1e-12);
  assert.ok(learningRate(opts, 110) < 1e-12);
  const step = { ...opts, kind: 'step' as const };
  assert.equal(learningRate(step, 59), 0.1);
  assert.ok(Math.abs(learningRate(step, 61) - 0.01) < 1e-12);
  assert.ok(Math.abs(learningRate(step, 90) - 0.001) < 1e-12);
  assert.equal(learningRate({ ...opts, kind: 'constant' }, 100), 0.1);
});
