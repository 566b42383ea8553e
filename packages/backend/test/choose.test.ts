import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseBackend, describeCandidate, measurements, type CandidateResult } from '../src/choose.js';

/** Candidates as the Node chain reports them on a machine with lavapipe (measured on resnet20v2). */
const lavapipeMachine: CandidateResult[] = [
  { name: 'tfjs-node-gpu', ok: false, imagesPerSecond: null, software: false, reason: '@tensorflow/tfjs-node-gpu is not installed' },
  { name: 'webgpu', ok: true, imagesPerSecond: 4.2, software: true },
  { name: 'tfjs-node', ok: false, imagesPerSecond: null, software: false, reason: '@tensorflow/tfjs-node is not installed' },
  { name: 'wasm', ok: true, imagesPerSecond: 45.8, software: false },
];

test('the fastest candidate that passed wins, and the others say why not', { timeout: 5000 }, () => {
  const choice = chooseBackend([
    { name: 'webgpu', ok: true, imagesPerSecond: 900, software: false },
    { name: 'tfjs-node', ok: true, imagesPerSecond: 1200, software: false },
    { name: 'wasm', ok: true, imagesPerSecond: 45, software: false },
  ]);
  assert.equal(choice.name, 'tfjs-node');
  assert.match(choice.results[0].reason!, /slower than tfjs-node \(900 against 1200 img\/s\)/);
  assert.match(choice.results[2].reason!, /slower than tfjs-node/);
  assert.equal(choice.results[1].reason, undefined);
});

test('a software adapter never wins over WASM, even when measured faster', { timeout: 5000 }, () => {
  assert.equal(chooseBackend(lavapipeMachine).name, 'wasm');
  // A short measurement is noisy and a tiny model flatters a software GPU: still WASM.
  const faster = chooseBackend([
    { name: 'webgl', ok: true, imagesPerSecond: 60, software: true },
    { name: 'wasm', ok: true, imagesPerSecond: 50, software: false },
  ]);
  assert.equal(faster.name, 'wasm');
  assert.match(faster.results[0].reason!, /software rendering, never preferred over wasm/);
});

test('a software adapter is taken when WASM cannot train, and when forced', { timeout: 5000 }, () => {
  const noWasm = chooseBackend([
    { name: 'webgpu', ok: true, imagesPerSecond: 4, software: true },
    { name: 'wasm', ok: false, imagesPerSecond: null, software: false, reason: 'no WebAssembly' },
    { name: 'cpu', ok: true, imagesPerSecond: 0.5, software: false },
  ]);
  assert.equal(noWasm.name, 'webgpu');
  const forced = chooseBackend([{ name: 'webgpu', ok: true, imagesPerSecond: null, software: true }], { force: 'webgpu' });
  assert.equal(forced.name, 'webgpu');
  assert.equal(chooseBackend(lavapipeMachine, { force: 'webgpu' }).name, 'webgpu');
});

test('a forced backend that fails is an error with its reason, never replaced', { timeout: 5000 }, () => {
  assert.throws(
    () => chooseBackend(lavapipeMachine, { force: 'tfjs-node' }),
    /backend tfjs-node is not usable here: @tensorflow\/tfjs-node is not installed/,
  );
  assert.throws(() => chooseBackend(lavapipeMachine, { force: 'webgl' }), /backend webgl was not tried/);
});

test('nothing passed: the error lists every reason', { timeout: 5000 }, () => {
  assert.throws(
    () => chooseBackend(lavapipeMachine.map((c) => ({ ...c, ok: false, reason: c.reason ?? `${c.name} broke` }))),
    (error: Error) => /no TensorFlow.js backend could train here/.test(error.message) && /webgpu broke/.test(error.message) && /wasm broke/.test(error.message),
  );
});

test('unmeasured candidates keep chain order; a measured one beats an unmeasured one', { timeout: 5000 }, () => {
  const unmeasured = [
    { name: 'webgpu', ok: true, imagesPerSecond: null, software: false },
    { name: 'wasm', ok: true, imagesPerSecond: null, software: false },
  ];
  assert.equal(chooseBackend(unmeasured).name, 'webgpu');
  assert.equal(chooseBackend([unmeasured[0], { ...unmeasured[1], imagesPerSecond: 10 }]).name, 'wasm');
  // Ties go to the earlier candidate.
  assert.equal(chooseBackend(unmeasured.map((c) => ({ ...c, imagesPerSecond: 10 }))).name, 'webgpu');
});

test('measurements: what the hello carries, short and without the chosen one\'s reason', { timeout: 5000 }, () => {
  const choice = chooseBackend([...lavapipeMachine, { name: 'cpu', ok: false, imagesPerSecond: null, software: false, reason: 'x'.repeat(1000) }]);
  const m = measurements(choice);
  assert.deepEqual(m.map((e) => e.name), ['tfjs-node-gpu', 'webgpu', 'tfjs-node', 'wasm', 'cpu']);
  assert.deepEqual(m[3], { name: 'wasm', imagesPerSecond: 45.8 });
  assert.equal(m[1].imagesPerSecond, 4.2);
  assert.match(m[1].skipped!, /software rendering/);
  assert.ok(m[4].skipped!.length <= 200);
  assert.equal(describeCandidate(lavapipeMachine[1]), 'webgpu 4.20 img/s');
  assert.equal(describeCandidate(lavapipeMachine[0]), 'tfjs-node-gpu: @tensorflow/tfjs-node-gpu is not installed');
});
