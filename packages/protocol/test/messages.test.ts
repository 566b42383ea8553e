import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CLOSE_CODES, ERROR_CODES, MESSAGE_TYPES, PROTOCOL_VERSION } from '../src/index.js';

test('message types and error codes are listed once each', () => {
  assert.equal(new Set(MESSAGE_TYPES).size, MESSAGE_TYPES.length);
  assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length);
  assert.ok(ERROR_CODES.includes('bad-gradient'));
});

test('version and close codes are what peers already rely on', () => {
  assert.equal(PROTOCOL_VERSION, 1);
  for (const [name, code] of Object.entries(CLOSE_CODES)) {
    if (name !== 'normal' && name !== 'tooLarge') assert.ok(code >= 4000 && code <= 4999, name);
  }
});
