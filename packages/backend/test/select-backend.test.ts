import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { describeChoice, selectNodeBackend } from '../src/node/index.js';

test('the chain takes the best backend that can train and says why better ones were skipped', async () => {
  const choice = await selectNodeBackend();
  assert.equal(tf.getBackend(), choice.tfBackend);
  // On a machine without tfjs-node(-gpu) or a hardware Vulkan GPU (like CI, with or without
  // lavapipe), that is WASM; every other candidate is listed with the reason it lost.
  const others = choice.candidates.filter((c) => c.name !== choice.name);
  if (choice.name === 'wasm') assert.deepEqual(others.map((c) => c.name), ['tfjs-node-gpu', 'webgpu', 'tfjs-node']);
  for (const c of others) assert.ok((c.reason ?? '').length > 10, `${c.name} has a reason`);
  for (const s of choice.skipped) assert.ok(s.reason.length > 10, `${s.name} has a reason`);
  const text = describeChoice(choice);
  assert.match(text, new RegExp(`^backend: ${choice.name} `));
  assert.equal(text.split('\n').length, 1 + others.length);
});

test('a forced backend is taken or refused with its reason, never replaced silently', async () => {
  const cpu = await selectNodeBackend({ force: 'cpu' });
  assert.equal(cpu.name, 'cpu');
  assert.equal(tf.getBackend(), 'cpu');
  const wasm = await selectNodeBackend({ force: 'wasm' });
  assert.equal(tf.getBackend(), 'wasm');
  assert.deepEqual(wasm.skipped, []);
  let installed = true;
  try {
    await import('@tensorflow/tfjs-node' as string);
  } catch {
    installed = false;
  }
  if (!installed) {
    await assert.rejects(selectNodeBackend({ force: 'tfjs-node' }), /backend tfjs-node is not usable here: .*not installed/);
    assert.equal(tf.getBackend(), 'wasm');
  }
  await assert.rejects(selectNodeBackend({ force: 'cuda' }), /unknown backend 'cuda'; choose one of: tfjs-node-gpu, webgpu/);
});
