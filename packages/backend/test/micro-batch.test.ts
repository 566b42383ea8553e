import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultMicroBatch, microBatchFor } from '../src/micro-batch.js';

test('Node micro-batch defaults: 256 on GPU backends, 32 on WASM, 16 on plain JavaScript', () => {
  assert.equal(defaultMicroBatch('tensorflow'), 256);
  assert.equal(defaultMicroBatch('webgpu', 'node'), 256);
  assert.equal(defaultMicroBatch('wasm'), 32);
  assert.equal(defaultMicroBatch('cpu'), 16);
});

test('tab micro-batch defaults: 64 on GPU backends, 32 on WASM and CPU', () => {
  assert.equal(defaultMicroBatch('webgpu', 'browser'), 64);
  assert.equal(defaultMicroBatch('webgl', 'browser'), 64);
  assert.equal(defaultMicroBatch('wasm', 'browser'), 32);
  assert.equal(defaultMicroBatch('cpu', 'browser'), 32);
});

test('a requested micro-batch wins, in whole examples', () => {
  assert.equal(microBatchFor('wasm', 'node', 12.7), 12);
  assert.equal(microBatchFor('wasm', 'browser', null), 32);
  assert.equal(microBatchFor('tensorflow', 'node', undefined), 256);
});
