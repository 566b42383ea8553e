import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FrameWriter, decodeFrame, encodeMessage } from '../src/index.js';
import { floats, sampleMessages } from './fixtures.js';

test('produces the same bytes as encodeMessage, for every message type', () => {
  const writer = new FrameWriter();
  for (const message of Object.values(sampleMessages())) {
    assert.deepEqual(writer.encode(message), encodeMessage(message));
  }
});

test('reuses its buffer when the next frame fits', () => {
  const writer = new FrameWriter();
  const message = sampleMessages().gradient;
  const first = writer.encode(message);
  const second = writer.encode({ ...message, step: 13, gradient: floats(10, 9) });
  assert.equal(second.buffer, first.buffer);
  assert.equal(decodeFrame(second).step, 13);
});

test('grows for a larger frame, and re-zeroes padding a previous frame left dirty', () => {
  const writer = new FrameWriter(16);
  const big = { ...sampleMessages().update, params: floats(100_000) };
  const frame = writer.encode(big);
  assert.ok(writer.capacity >= frame.length);
  assert.deepEqual(frame, encodeMessage(big));
  // Fill the buffer with junk, then write a smaller frame with odd-length u8 tails over it.
  new Uint8Array(frame.buffer).fill(0xff);
  const assign = { ...sampleMessages().assign, indices: Int32Array.from([1]), labels: Uint8Array.from([5]), pixels: new Uint8Array(3072).fill(1) };
  assert.deepEqual(writer.encode(assign), encodeMessage(assign));
  assert.equal(decodeFrame(writer.encode(assign)).augmentSeed, assign.augmentSeed);
});
