import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { closeReason, MAX_CLOSE_REASON_BYTES } from '../src/index.js';

const bytes = (s: string) => new TextEncoder().encode(s).length;

test('a short reason is kept as it is', () => {
  assert.equal(closeReason('bye'), 'bye');
  assert.equal(closeReason(''), '');
  assert.equal(closeReason('x'.repeat(MAX_CLOSE_REASON_BYTES)), 'x'.repeat(MAX_CLOSE_REASON_BYTES));
});

test('64 euro signs (192 UTF-8 bytes, 64 UTF-16 units) are cut to fit, on a character boundary', () => {
  const reason = `unknown message type "${'€'.repeat(64)}"`;
  assert.ok(reason.length < 123, 'short in UTF-16 units: a .slice() would not have cut it');
  const cut = closeReason(reason);
  assert.ok(bytes(cut) <= MAX_CLOSE_REASON_BYTES);
  assert.ok(cut.endsWith('...'));
  assert.ok(!cut.includes('\uFFFD'), 'no split UTF-8 sequence');
});

test('any string becomes a reason of at most 123 UTF-8 bytes that starts like the original', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 400 }), (reason) => {
      const cut = closeReason(reason);
      assert.ok(bytes(cut) <= MAX_CLOSE_REASON_BYTES, `${bytes(cut)} bytes`);
      const wellFormed = new TextDecoder().decode(new TextEncoder().encode(reason));
      if (bytes(reason) <= MAX_CLOSE_REASON_BYTES) assert.equal(cut, wellFormed);
      else assert.ok(wellFormed.startsWith(cut.slice(0, -3)));
    }),
    { numRuns: 2000 },
  );
});
