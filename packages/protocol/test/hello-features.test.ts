import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProtocolError, WORKER_FEATURES, encodeMessage, parseMessage, validateMessage, type Hello } from '../src/index.js';
import { sampleMessages } from './fixtures.js';

const withFeatures = (features: unknown): Hello => ({ ...sampleMessages().hello, features } as Hello);

test('hello: features is optional, and a list (names this side does not know among them) survives the wire', { timeout: 5000 }, () => {
  assert.equal(sampleMessages().hello.features, undefined);
  assert.doesNotThrow(() => validateMessage(sampleMessages().hello));
  const hello = withFeatures([...WORKER_FEATURES, 'a-later-feature']);
  assert.deepStrictEqual(parseMessage(encodeMessage(hello)), hello);
});

test('hello: features is bounded and checked', { timeout: 5000 }, () => {
  for (const [what, features] of [
    ['too many names', Array.from({ length: 33 }, (_, i) => `f${i}`)],
    ['a long name', ['x'.repeat(33)]],
    ['a name that is a number', [7]],
    ['not an array', 'low-rank'],
    ['null', null],
  ] as const) {
    assert.throws(() => validateMessage(withFeatures(features)), ProtocolError, what);
  }
});
