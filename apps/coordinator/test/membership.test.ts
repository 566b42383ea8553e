import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Membership } from '../src/run/membership.js';
import type { Connection } from '../src/http/connection.js';

const runtime = { kind: 'node' as const, backend: 'wasm', device: 'cpu', cores: 2, microBatch: 32, agent: 'test' };
const conn = {} as Connection;

test('joins get fresh ids; a returning worker gets its record and measured speed back', () => {
  const m = new Membership();
  const a = m.join(runtime, conn, 0);
  const b = m.join(runtime, conn, 0);
  assert.deepEqual([a.id, b.id], ['w1', 'w2']);
  m.recordShard(a, 100, 1000, 900);
  assert.equal(a.speed, 100);
  m.leave(a.id, 'network');
  assert.deepEqual(m.ready().map((w) => w.id), ['w2']);
  const back = m.join(runtime, conn, 5, 'w1');
  assert.equal(back, a);
  assert.equal(back.state, 'ready');
  assert.equal(back.speed, 100);
  // An id that is still connected (or unknown) is not taken over: a new id is handed out.
  assert.equal(m.join(runtime, conn, 6, 'w2').id, 'w3');
  assert.equal(m.join(runtime, conn, 6, 'nope').id, 'w4');
});

test('speed is an EWMA of end-to-end throughput; silent workers are found by the heartbeat timeout', () => {
  const m = new Membership();
  const w = m.join(runtime, conn, 0);
  m.recordShard(w, 64, 1000, 500);
  m.recordShard(w, 64, 500, 400);
  assert.equal(w.speed, 0.5 * 64 + 0.5 * 128);
  assert.equal(w.lastShard, 64);
  assert.equal(w.imagesDone, 128);
  w.lastSeen = 1000;
  assert.deepEqual(m.silent(60_000, 60_000), []);
  assert.deepEqual(m.silent(61_001, 60_000).map((x) => x.id), ['w1']);
  m.leave(w.id, 'timed out');
  assert.deepEqual(m.silent(1e9, 60_000), []);
  assert.equal(m.leave(w.id, 'again'), undefined, 'leaving twice is a no-op');
});
