import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatLogLine, formatLogValue } from '../src/log-line.js';

const at = new Date('2025-01-02T03:04:05.678Z');

test('a line: ISO time, level padded to 5, message, then key=value', () => {
  assert.equal(formatLogLine('info', 'joined as w3', { worker: 'local-1', preset: 'tiny', params: 1234 }, at), '2025-01-02T03:04:05.678Z info  joined as w3 worker=local-1 preset=tiny params=1234');
  assert.equal(formatLogLine('error', 'failed', {}, at), '2025-01-02T03:04:05.678Z error failed');
  assert.equal(formatLogLine('warn', 'x', { gone: undefined, ok: true, none: null }, at), '2025-01-02T03:04:05.678Z warn  x ok=true none=null');
  assert.match(formatLogLine('debug', 'now'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z debug now$/);
});

test('values with spaces or unusual characters are JSON-quoted; plain tokens are not', () => {
  assert.equal(formatLogValue('ws://127.0.0.1:8080/ws'), 'ws://127.0.0.1:8080/ws');
  assert.equal(formatLogValue('a+b@c-d_e.f'), 'a+b@c-d_e.f');
  assert.equal(formatLogValue('CPU (WebAssembly, XNNPACK)'), '"CPU (WebAssembly, XNNPACK)"');
  assert.equal(formatLogValue('say "hi"'), '"say \\"hi\\""');
  assert.equal(formatLogValue('k=v'), '"k=v"');
  assert.equal(formatLogValue(''), '""');
  assert.equal(formatLogValue(45.8), '45.8');
});
