import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProtocolError } from '../src/index.js';
import { quote } from '../src/errors.js';

test('ProtocolError carries its code, name and cause', () => {
  const cause = new Error('inner');
  const error = new ProtocolError('bad-gradient', 'element 3 is NaN', { cause });
  assert.ok(error instanceof Error);
  assert.ok(error instanceof ProtocolError);
  assert.equal(error.code, 'bad-gradient');
  assert.equal(error.name, 'ProtocolError');
  assert.equal(error.message, 'element 3 is NaN');
  assert.equal(error.cause, cause);
});

test('quote shows wire values briefly, strings quoted', () => {
  assert.equal(quote(2), '2');
  assert.equal(quote('2'), '"2"');
  assert.equal(quote(undefined), 'undefined');
  assert.equal(quote('x'.repeat(100), 4), '"xxxx..."');
});
