import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay } from '../src/backoff.js';

test('back-off doubles up to the cap, with jitter in the upper half', () => {
  assert.equal(backoffDelay(0, 500, 15_000, () => 0), 250);
  assert.equal(backoffDelay(0, 500, 15_000, () => 1), 500);
  assert.equal(backoffDelay(3, 500, 15_000, () => 1), 4000);
  assert.equal(backoffDelay(10, 500, 15_000, () => 1), 15_000);
  assert.equal(backoffDelay(1000, 500, 15_000, () => 0.5), 11_250);
});
