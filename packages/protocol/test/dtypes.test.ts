import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HOST_IS_LITTLE_ENDIAN, createTail, dtypeBytes, dtypeOf, isDtype } from '../src/dtypes.js';

test('dtypeOf maps the three wire classes and flags other views', () => {
  assert.equal(dtypeOf(new Float32Array(1)), 'f32');
  assert.equal(dtypeOf(new Int32Array(1)), 'i32');
  assert.equal(dtypeOf(new Uint8Array(1)), 'u8');
  assert.equal(dtypeOf(Buffer.alloc(1)), 'u8');
  assert.equal(dtypeOf(new Float64Array(1)), null);
  assert.equal(dtypeOf(new Uint8ClampedArray(1)), null);
  assert.equal(dtypeOf(new DataView(new ArrayBuffer(4))), null);
  assert.equal(dtypeOf([1, 2]), undefined);
  assert.equal(dtypeOf('x'), undefined);
});

test('isDtype accepts only wire names, not inherited keys', () => {
  for (const name of ['f32', 'i32', 'u8']) assert.ok(isDtype(name));
  for (const name of ['f64', 'toString', '__proto__', '', 4, null]) assert.ok(!isDtype(name));
});

test('createTail builds views of the right class and size', () => {
  const buffer = new ArrayBuffer(16);
  const f = createTail('f32', buffer, 4, 2);
  assert.ok(f instanceof Float32Array && f.buffer === buffer && f.byteOffset === 4 && f.length === 2);
  assert.ok(createTail('i32', buffer, 0, 4) instanceof Int32Array);
  assert.ok(createTail('u8', buffer, 3, 5) instanceof Uint8Array);
  assert.deepEqual([dtypeBytes('f32'), dtypeBytes('i32'), dtypeBytes('u8')], [4, 4, 1]);
});

test('the test host is little-endian, as the frame format assumes', () => {
  assert.equal(HOST_IS_LITTLE_ENDIAN, true);
});
