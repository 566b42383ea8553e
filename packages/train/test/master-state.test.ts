import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EpochSampler, createRng, hash32 } from '@chorus/data';
import { BN_MOMENTUM, PRESETS, buildGraph, initialBnStats, initialParams, weightLayout } from '@chorus/model';
import {
  MasterState,
  createOptimizer,
  learningRate,
  masterKernelsAvailable,
  setMasterKernelsEnabled,
  scaledLr,
  scheduleOf,
  updateRunningStats,
  type OptimizerName,
  type TrainingConfig,
} from '../src/index.js';

const layout = weightLayout(buildGraph(PRESETS.tiny));
const P = layout.paramCount;
const S = layout.bnStatCount;
const DATASET = 1000;

function config(overrides: Partial<TrainingConfig> = {}): TrainingConfig {
  return {
    spec: PRESETS.tiny,
    batch: 64,
    steps: 40,
    lr: 0.1,
    optimizer: 'sgd',
    weightDecay: 5e-4,
    warmupSteps: 5,
    schedule: 'cosine',
    bnGroup: 32,
    seed: 7,
    augment: true,
    ...overrides,
  };
}

/** Deterministic pseudo-gradients and BatchNorm moments for step `step` (variances non-negative). */
function inputs(step: number): { gradient: Float32Array; moments: Float32Array } {
  const next = createRng(hash32(12345, step));
  const uniform = () => next() / 2 ** 32 - 0.5;
  const gradient = Float32Array.from({ length: P }, () => 0.1 * uniform());
  const moments = Float32Array.from({ length: S }, (_, i) => (i < S / 2 ? uniform() : 1 + uniform()));
  return { gradient, moments };
}

function run(master: MasterState, from: number, to: number): void {
  for (let step = from; step < to; step++) {
    const { gradient, moments } = inputs(step);
    master.apply(gradient, moments);
  }
}

function assertBitIdentical(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  const first = x.findIndex((v, i) => v !== y[i]);
  assert.equal(first, -1, `${what}: first difference at ${first}: ${a[first]} vs ${b[first]}`);
}

function assertSameState(a: MasterState, b: MasterState): void {
  assert.equal(a.step, b.step);
  assertBitIdentical(a.params, b.params, 'params');
  assertBitIdentical(a.bnStats, b.bnStats, 'bnStats');
  const sa = a.snapshot().optimizer;
  const sb = b.snapshot().optimizer;
  assert.equal(sa.kind, sb.kind);
  assert.equal(sa.updates, sb.updates);
  assert.equal(sa.slots.length, sb.slots.length);
  sa.slots.forEach((slot, i) => assertBitIdentical(slot, sb.slots[i], `optimizer slot ${i}`));
}

test('starts from the seeded initial weights and BatchNorm statistics at step 0', () => {
  const master = new MasterState(config(), layout, DATASET);
  assert.equal(master.step, 0);
  assertBitIdentical(master.params, initialParams(layout, 7), 'params');
  assertBitIdentical(master.bnStats, initialBnStats(layout), 'bnStats');
});

test('apply is exactly the optimizer update, then the running statistics, at the scheduled lr', () => {
  for (const name of ['sgd', 'adam'] as OptimizerName[]) {
    const c = config({ optimizer: name });
    const master = new MasterState(c, layout, DATASET);
    const params = initialParams(layout, c.seed);
    const bnStats = initialBnStats(layout);
    const optimizer = createOptimizer(name, layout, { weightDecay: c.weightDecay });
    for (let step = 0; step < 8; step++) {
      const { gradient, moments } = inputs(step);
      const lr = learningRate(scheduleOf(c), step);
      optimizer.apply(params, gradient, lr);
      updateRunningStats(bnStats, moments, BN_MOMENTUM);
      assert.equal(master.apply(gradient, moments), lr);
      assert.equal(master.step, step + 1);
    }
    assertBitIdentical(master.params, params, `${name} params`);
    assertBitIdentical(master.bnStats, bnStats, `${name} bnStats`);
  }
});

test('two master states fed the same gradients stay bit-identical', () => {
  for (const name of ['sgd', 'adam'] as OptimizerName[]) {
    const a = new MasterState(config({ optimizer: name }), layout, DATASET);
    const b = new MasterState(config({ optimizer: name }), layout, DATASET);
    run(a, 0, 20);
    run(b, 0, 20);
    assertSameState(a, b);
  }
});

test('with the SIMD kernels, weights, gradient array and SGD state share the kernels\' memory and step to the JavaScript loops\' bits', () => {
  assert.ok(P >= 1024, 'the model is large enough for the kernels');
  assert.equal(masterKernelsAvailable(), true);
  const resident = new MasterState(config(), layout, DATASET);
  // Resident: views of one WebAssembly memory (whole 64 KiB pages), not arrays of their own.
  assert.equal(resident.params.buffer, resident.gradientBuffer.buffer);
  assert.equal(resident.params.buffer.byteLength % 65536, 0);
  const previous = setMasterKernelsEnabled(false);
  let plain: MasterState;
  try {
    plain = new MasterState(config(), layout, DATASET);
    assert.notEqual(plain.params.buffer, plain.gradientBuffer.buffer);
  } finally {
    setMasterKernelsEnabled(previous);
  }
  const step = (master: MasterState, from: number, to: number, kernels: boolean) => {
    const was = setMasterKernelsEnabled(kernels);
    try {
      for (let s = from; s < to; s++) {
        const { gradient, moments } = inputs(s);
        // The coordinator's way: the mean gradient written into gradientBuffer.
        master.gradientBuffer.set(gradient);
        master.apply(master.gradientBuffer, moments);
      }
    } finally {
      setMasterKernelsEnabled(was);
    }
  };
  step(resident, 0, 8, true);
  step(plain, 0, 8, false);
  assertSameState(resident, plain);
  // A restore writes into the resident arrays, which go on stepping in place.
  const snapshot = plain.snapshot();
  const again = new MasterState(config(), layout, DATASET);
  again.restore(snapshot);
  assertSameState(again, plain);
  step(again, 8, 12, true);
  step(plain, 8, 12, false);
  assertSameState(again, plain);
});

test('snapshot and restore mid-run continue bit-identically to an uninterrupted run (SGD and Adam)', () => {
  for (const name of ['sgd', 'adam'] as OptimizerName[]) {
    const c = config({ optimizer: name });
    const uninterrupted = new MasterState(c, layout, DATASET);
    run(uninterrupted, 0, 30);

    const first = new MasterState(c, layout, DATASET);
    run(first, 0, 13);
    const snapshot = first.snapshot();
    run(first, 13, 20); // steps after the snapshot must not leak into it
    const resumed = new MasterState(c, layout, DATASET);
    const params = resumed.params;
    resumed.restore(snapshot);
    assert.equal(resumed.step, 13);
    assert.equal(resumed.params, params, 'restore writes into the arrays callers already hold');
    assert.deepEqual(resumed.batch(), first.batch(13));
    assert.equal(resumed.learningRate(), uninterrupted.learningRate(13));
    run(resumed, 13, 30);
    assertSameState(resumed, uninterrupted);
  }
});

test('a snapshot is a copy: later steps and edits of it do not touch each other', () => {
  const master = new MasterState(config(), layout, DATASET);
  run(master, 0, 3);
  const snapshot = master.snapshot();
  const before = snapshot.params.slice();
  run(master, 3, 4);
  assertBitIdentical(snapshot.params, before, 'snapshot params');
  const live = master.params.slice();
  snapshot.params.fill(0);
  snapshot.optimizer.slots[0].fill(0);
  assertBitIdentical(master.params, live, 'live params');
});

test('batch() is the EpochSampler batch and the hash32 augmentation seed of the step', () => {
  const c = config();
  const master = new MasterState(c, layout, DATASET);
  const sampler = new EpochSampler({ datasetSize: DATASET, globalBatch: c.batch, seed: c.seed });
  for (const step of [0, 1, 15, 16, 17, 39, 1000]) {
    const { indices, augmentSeed } = master.batch(step);
    assert.deepEqual(indices, sampler.indicesForStep(step));
    assert.equal(augmentSeed, hash32(c.seed, step));
    assert.equal(master.epochOf(step), sampler.epochOf(step));
  }
  // Without an argument: the step about to be computed.
  assert.deepEqual(master.batch(), master.batch(0));
  run(master, 0, 2);
  assert.deepEqual(master.batch(), master.batch(2));
  assert.equal(new MasterState(config({ augment: false }), layout, DATASET).batch(3).augmentSeed, null);
  assert.throws(() => master.batch(-1), /step must be a non-negative integer/);
});

test('learningRate follows the schedule: linear warm-up, scaled peak, then decay', () => {
  const c = config({ batch: 256, lr: 0.1, warmupSteps: 4, steps: 20, schedule: 'step' });
  const master = new MasterState(c, layout, DATASET);
  const peak = scaledLr(0.1, 256);
  assert.ok(Math.abs(peak - 0.2) < 1e-12);
  for (let step = 0; step < 4; step++) assert.equal(master.learningRate(step), (peak * (step + 1)) / 4);
  assert.equal(master.learningRate(4), peak);
  assert.equal(master.learningRate(12), peak * 0.1); // progress 0.5
  assert.equal(master.learningRate(16), peak * 0.01); // progress 0.75
  for (let step = 0; step < 20; step++) assert.equal(master.learningRate(step), learningRate(scheduleOf(c), step));
  assert.equal(master.learningRate(), master.learningRate(0));
});

test('wrong lengths are refused with a clear error, and leave the state untouched', () => {
  const master = new MasterState(config(), layout, DATASET);
  run(master, 0, 2);
  const before = master.snapshot();
  const { gradient, moments } = inputs(2);
  assert.throws(() => master.apply(new Float32Array(P - 1), moments), new RegExp(`gradient must be a Float32Array of ${P} values, got ${P - 1}`));
  // A bad moments array must not let the optimizer step go through first.
  assert.throws(() => master.apply(gradient, new Float32Array(S + 2)), new RegExp(`BatchNorm moments must be a Float32Array of ${S} values, got ${S + 2}`));
  assert.throws(() => master.restore({ ...before, params: new Float32Array(3) }), /params must be a Float32Array of \d+ values, got 3/);
  assert.throws(() => master.restore({ ...before, bnStats: new Float32Array(0) }), /BatchNorm statistics must be a Float32Array of \d+ values, got 0/);
  assert.throws(() => master.restore({ ...before, step: -1 }), /step must be a non-negative integer/);
  assert.throws(() => master.restore({ ...before, step: 1.5 }), /step must be a non-negative integer/);
  assert.throws(
    () => master.restore({ ...before, optimizer: { ...before.optimizer, slots: [new Float32Array(P - 1)] } }),
    /does not belong to an SGD optimizer of this model/,
  );
  const adam = new MasterState(config({ optimizer: 'adam' }), layout, DATASET).snapshot();
  assert.throws(() => master.restore(adam), /the snapshot's optimizer is adam, this run uses sgd/);
  assertSameState(master, restored(before));
  master.apply(gradient, moments);
  assert.equal(master.step, 3);
});

function restored(snapshot: ReturnType<MasterState['snapshot']>): MasterState {
  const m = new MasterState(config(), layout, DATASET);
  m.restore(snapshot);
  return m;
}
