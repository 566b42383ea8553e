import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MESSAGE_TYPES } from '../src/index.js';
import { MESSAGE_SCHEMAS, firstNonFinite, jsonProblem } from '../src/schemas.js';

test('there is one schema per message type', () => {
  assert.deepEqual(Object.keys(MESSAGE_SCHEMAS).sort(), [...MESSAGE_TYPES].sort());
});

test('firstNonFinite finds NaN and both infinities, and only them', () => {
  assert.equal(firstNonFinite(Float32Array.from([0, -0, 3.4e38, -1e-45])), -1);
  assert.equal(firstNonFinite(new Float32Array(0)), -1);
  for (const bad of [NaN, Infinity, -Infinity]) assert.equal(firstNonFinite(Float32Array.from([1, 2, bad, bad])), 2);
});

test('jsonProblem accepts JSON data and names the path of anything else', () => {
  assert.equal(jsonProblem({ a: [1, 'x', null, true, { b: -2.5 }], c: undefined }), null);
  assert.equal(jsonProblem(Object.assign(Object.create(null), { a: 1 })), null);
  assert.equal(jsonProblem({ a: [0, Infinity] }), 'spec.a[1] is Infinity');
  assert.equal(jsonProblem({ m: new Map() }), 'spec.m is a Map, not JSON data');
  assert.equal(jsonProblem({ f: new Float32Array(1) }), 'spec.f is a Float32Array, not JSON data');
  assert.equal(jsonProblem({ s: Symbol('x') }), 'spec.s is a symbol, not JSON data');
});
