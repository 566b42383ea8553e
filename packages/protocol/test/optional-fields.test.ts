import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProtocolError, WORKER_FEATURES, encodeMessage, parseMessage, validateMessage, type Hello, type Update } from '../src/index.js';
import { LIMITS, sampleMessages } from './fixtures.js';

const withFeatures = (features: unknown): Hello => ({ ...sampleMessages().hello, features } as Hello);

test('hello: features is optional, and a list (names this side does not know among them) survives the wire', { timeout: 5000 }, () => {
  assert.equal(sampleMessages().hello.features, undefined);
  assert.doesNotThrow(() => validateMessage(sampleMessages().hello));
  const hello = withFeatures([...WORKER_FEATURES, 'a-later-feature']);
  assert.deepStrictEqual(parseMessage(encodeMessage(hello)), hello);
});

test('hello: features is bounded and checked', { timeout: 5000 }, () => {
  for (const [what, features] of [
    ['too many names', Array.from({ length: 17 }, (_, i) => `f${i}`)],
    ['a long name', ['x'.repeat(33)]],
    ['an upper-case name', ['Low-rank']],
    ['a name outside ASCII', ['låw-rank']],
    ['an empty name', ['']],
    ['a name that is a number', [7]],
    ['not an array', 'low-rank'],
    ['null', null],
  ] as const) {
    assert.throws(() => validateMessage(withFeatures(features)), ProtocolError, what);
  }
});

test('update: counted (the shard ids it applied) is optional, survives the wire and is bounded by the batch', { timeout: 5000 }, () => {
  const update = { ...sampleMessages().update, counted: Int32Array.from([3, 4, 9]) } as Update;
  assert.deepStrictEqual(parseMessage(encodeMessage(update), LIMITS), update);
  const tooMany = { ...update, counted: new Int32Array(LIMITS.maxShardExamples! + 1) } as Update;
  assert.throws(() => parseMessage(encodeMessage(tooMany), LIMITS), /update\.counted names \d+ shards/);
  assert.throws(() => validateMessage({ ...update, counted: [3, 4] } as unknown as Update), ProtocolError, 'an array, not an Int32Array');
});
