import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeMessage, parseMessage, validateMessage, type Hello } from '../src/index.js';
import { sampleMessages } from './fixtures.js';

const withBackends = (backends: unknown): Hello => ({ ...sampleMessages().hello, runtime: { ...sampleMessages().hello.runtime, backends } } as Hello);

test('hello: runtime.backends (the measured candidates) is optional and survives the wire', { timeout: 5000 }, () => {
  assert.doesNotThrow(() => validateMessage(sampleMessages().hello));
  const hello = withBackends([
    { name: 'webgpu', imagesPerSecond: 4.2, skipped: 'software rendering, never preferred over wasm' },
    { name: 'tfjs-node', imagesPerSecond: null, skipped: 'not installed' },
    { name: 'wasm', imagesPerSecond: 45.8 },
  ]);
  assert.deepStrictEqual(parseMessage(encodeMessage(hello)), hello);
});

test('hello: runtime.backends is bounded and checked', { timeout: 5000 }, () => {
  const entry = { name: 'wasm', imagesPerSecond: 1 };
  for (const [what, backends] of [
    ['too many entries', Array.from({ length: 9 }, () => entry)],
    ['a long name', [{ ...entry, name: 'x'.repeat(33) }]],
    ['an empty name', [{ ...entry, name: '' }]],
    ['a long reason', [{ ...entry, skipped: 'x'.repeat(301) }]],
    ['a negative speed', [{ ...entry, imagesPerSecond: -1 }]],
    ['an absurd speed', [{ ...entry, imagesPerSecond: 1e9 }]],
    ['a speed that is text', [{ ...entry, imagesPerSecond: '5' }]],
    ['not an array', { wasm: 5 }],
  ] as const) {
    assert.throws(() => validateMessage(withBackends(backends)), Error, what);
  }
});
