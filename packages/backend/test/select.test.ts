import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { activateBackend, selectBackend, type BackendCandidate, type SelectEvent } from '../src/select.js';

/** Candidates that all run on tfjs' plain JavaScript backend, with a made-up speed each. */
function fake(name: string, options: { speed?: number; software?: boolean; fails?: string } = {}): BackendCandidate<string> & { speed: number } {
  return {
    name,
    speed: options.speed ?? 1,
    load: async () => {
      if (options.fails) throw new Error(`${options.fails}\nsecond line`);
      await activateBackend('cpu');
      return { device: `${name} device`, software: options.software ?? false };
    },
  };
}

test('one loop: every candidate tried, measured, the fastest taken, the others with their reason', { timeout: 60_000 }, async () => {
  const candidates = [fake('gpu', { fails: 'no adapter' }), fake('soft', { speed: 90, software: true }), fake('wasm', { speed: 40 }), fake('slow', { speed: 5 })];
  const events: SelectEvent<string>[] = [];
  const released: string[] = [];
  const speeds = new Map(candidates.map((c) => [c.name, c.speed]));
  const s = await selectBackend({
    candidates,
    lastResort: fake('cpu'),
    selfTest: false,
    measure: async (name) => speeds.get(name)!,
    release: (name) => released.push(name),
    onProgress: (e) => events.push(e),
  });
  assert.equal(s.chosen.name, 'wasm');
  assert.equal(tf.getBackend(), 'cpu');
  assert.deepEqual(s.candidates.map((c) => c.name), ['gpu', 'soft', 'wasm', 'slow'], 'the last resort is not tried when one passed');
  assert.equal(s.candidates[0].reason, 'no adapter');
  assert.match(s.candidates[1].reason!, /software rendering, never preferred over wasm/);
  assert.match(s.candidates[3].reason!, /slower than wasm/);
  assert.deepEqual(s.measurements.map((m) => m.imagesPerSecond), [null, 90, 40, 5]);
  assert.deepEqual(released, ['gpu', 'soft', 'slow']);
  assert.deepEqual(events.filter((e) => e.kind === 'skipped'), [{ kind: 'skipped', name: 'gpu', reason: 'no adapter' }]);
  assert.equal(events.filter((e) => e.kind === 'measured').length, 3);
});

test('the last resort only when nothing else passed; a forced backend is neither replaced nor timed', { timeout: 60_000 }, async () => {
  const s = await selectBackend({ candidates: [fake('gpu', { fails: 'no adapter' })], lastResort: fake('cpu'), selfTest: false });
  assert.equal(s.chosen.name, 'cpu');
  let measured = 0;
  const measure = async () => ++measured;
  const forced = await selectBackend({ candidates: [fake('a'), fake('b')], force: 'b', selfTest: false, measure });
  assert.equal(forced.chosen.name, 'b');
  assert.equal(measured, 0);
  await assert.rejects(selectBackend({ candidates: [fake('a', { fails: 'broken' })], force: 'a', where: 'in this tab' }), /backend a is not usable in this tab: broken/);
  await assert.rejects(selectBackend({ candidates: [fake('a')], force: 'z' }), /unknown backend 'z'; choose one of: a/);
  await assert.rejects(selectBackend({ candidates: [fake('a', { fails: 'broken' })], where: 'in this tab' }), /no TensorFlow.js backend could train in this tab:\n {2}a: broken/);
});

test('a candidate that passes the self-test but cannot train the model is skipped', { timeout: 60_000 }, async () => {
  const s = await selectBackend({
    candidates: [fake('big'), fake('small')],
    measure: async (name) => {
      if (name === 'big') throw new Error('out of memory');
      return 3;
    },
  });
  assert.equal(s.chosen.name, 'small');
  assert.equal(s.candidates[0].ok, false);
  assert.equal(s.candidates[0].reason, 'a training step of the model failed: out of memory');
});
