import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { createRng } from '@chorus/data';
import { initialBnStats, initialParams } from '@chorus/model';
import { CLOSE_CODES, LowRankPlan, PROTOCOL_VERSION, PublicWeights, getGradientCodec, type Message } from '@chorus/protocol';
import { ChorusWorker } from '../src/index.js';
import { FakeLink, layout, runtime, shardOf, until, welcome } from './fake-link.js';

await tf.setBackend('cpu');

test('joins with its token, trains an assigned shard, applies updates, evaluates and heartbeats', { timeout: 60_000 }, async (t) => {
  const link = new FakeLink();
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 } });
  const running = worker.start();
  // A failed assertion must not leave the worker's timers holding the file open.
  t.after(() => worker.stop());
  const hello = await link.next('hello');
  assert.equal(hello.type === 'hello' && hello.token, 'tok');
  link.deliver(welcome());
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 0, version: 0, shardId: 5, augmentSeed: 9, ...shardOf(12) });
  const g = await link.next('gradient');
  assert.ok(g.type === 'gradient');
  assert.equal(g.shardId, 5);
  assert.equal(g.count, 12);
  assert.equal(g.gradient.length, layout.paramCount);
  assert.ok(g.gradient.every(Number.isFinite) && g.gradient.some((v) => v !== 0));
  // An assignment for weights it does not hold is skipped, not computed on stale weights.
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 1, version: 1, shardId: 6, augmentSeed: 9, ...shardOf(4) });
  link.deliver({ type: 'update', v: PROTOCOL_VERSION, version: 1, params: initialParams(layout, 2), bnStats: initialBnStats(layout) });
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 1, version: 1, shardId: 7, augmentSeed: 9, ...shardOf(4) });
  const g2 = await link.next('gradient');
  assert.ok(g2.type === 'gradient' && g2.shardId === 7);
  assert.equal(link.sent.filter((m) => m.type === 'gradient').length, 0, 'the stale assignment was not answered');
  link.deliver({ type: 'evaluate', v: PROTOCOL_VERSION, evalId: 1, shardId: 8, version: 1, labels: shardOf(6).labels, pixels: shardOf(6).pixels });
  const ev = await link.next('evalResult');
  assert.ok(ev.type === 'evalResult' && ev.count === 6 && ev.correct <= 6);
  await link.next('heartbeat');
  worker.stop('done');
  await running;
  assert.ok(link.sent.some((m) => m.type === 'bye'));
});

test('a shard computer that fails is dropped: the worker trains on its own replica, with a warning', { timeout: 60_000 }, async (t) => {
  const link = new FakeLink();
  const logs: string[] = [];
  let calls = 0;
  let closed = 0;
  const shardComputer = {
    compute: async () => {
      calls++;
      throw new Error('replica thread 1 exited (code 1)');
    },
    close: () => {
      closed++;
    },
  };
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, shardComputer, log: (level, message, fields) => logs.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`) });
  const running = worker.start();
  // A failed assertion must not leave the worker's timers holding the file open.
  t.after(() => worker.stop());
  await link.next('hello');
  link.deliver(welcome());
  for (const shardId of [5, 6]) {
    link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 0, version: 0, shardId, augmentSeed: 9, ...shardOf(4) });
    const g = await link.next('gradient');
    assert.ok(g.type === 'gradient' && g.shardId === shardId && g.count === 4 && g.gradient.some((v) => v !== 0));
  }
  assert.equal(calls, 1, 'the failed computer is not asked again');
  assert.equal(closed, 1, 'the failed computer is closed, so its threads do not idle for the rest of the run');
  assert.equal(logs.filter((l) => l.startsWith("warn the replica threads failed: training on this worker's own replica")).length, 1, logs.join('\n'));
  assert.ok(logs.some((l) => l.includes('replica thread 1 exited (code 1)')));
  worker.stop('done');
  await running;
});

test('reconnects with back-off after a dropped connection and presents its id', { timeout: 60_000 }, async (t) => {
  const link = new FakeLink();
  let workerId: string | null = null;
  const worker = new ChorusWorker({
    url: 'ws://x',
    token: 'tok',
    connect: link.connect,
    runtime,
    reconnect: { initialMs: 10, maxMs: 20 },
    onStatus: (s) => (workerId = s.workerId),
  });
  const running = worker.start();
  // A failed assertion must not leave the worker's timers holding the file open.
  t.after(() => worker.stop());
  await link.next('hello');
  link.deliver(welcome());
  await until('the welcome to be taken', () => workerId === 'w7');
  link.refuse = true;
  link.events!.onClose(1006, 'network lost');
  // Refused twice more at least: it keeps trying, with back-off, rather than giving up.
  await until('two more connection attempts', () => link.connects >= 3);
  link.refuse = false;
  const hello = await link.next('hello');
  assert.ok(hello.type === 'hello' && hello.workerId === 'w7');
  worker.stop();
  await running;
});

test('a refused token stops the worker with the coordinator\'s reason', { timeout: 60_000 }, async () => {
  const link = new FakeLink();
  const worker = new ChorusWorker({ url: 'ws://x', token: 'bad', connect: link.connect, runtime });
  const running = worker.start();
  await link.next('hello');
  link.events!.onClose(CLOSE_CODES.badToken, 'wrong join token');
  await assert.rejects(running, /refused this worker: wrong join token/);
  assert.equal(link.connects, 1);
});

test('int8 run: sends int8 gradients with error feedback, applies deltas to its public weights, rejoins when it misses one', { timeout: 60_000 }, async (t) => {
  const codec = getGradientCodec('int8');
  const link = new FakeLink();
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 } });
  const running = worker.start();
  // A failed assertion must not leave the worker's timers holding the file open.
  t.after(() => worker.stop());
  await link.next('hello');
  const joined = welcome(3) as Extract<Message, { type: 'welcome' }>;
  link.deliver({ ...joined, run: { ...joined.run, codec: 'int8' } });
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 3, version: 3, shardId: 5, augmentSeed: 9, ...shardOf(8) });
  const g = await link.next('gradient');
  assert.ok(g.type === 'gradient' && g.gradient instanceof Int8Array && g.scales instanceof Float32Array);
  assert.equal(g.scales.length, Math.ceil(layout.paramCount / 256));
  // The coordinator's side of the downlink: the worker must end up with its bits.
  const coordinator = new PublicWeights(codec, joined.params);
  const master = joined.params.slice();
  for (let version = 4; version <= 6; version++) {
    for (let i = 0; i < master.length; i++) master[i] -= 1e-3 * Math.sin(i + version);
    const { values, scales } = coordinator.advance(master);
    link.deliver({ type: 'update', v: PROTOCOL_VERSION, version, delta: values, scales, bnStats: initialBnStats(layout) });
  }
  const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  await until('the updates to be applied', () => bytes(worker.publicWeights()!).equals(bytes(coordinator.weights)));
  // A delta for version 8 while holding 6 cannot be applied: the worker rejoins for the full weights.
  const { values, scales } = coordinator.advance(master);
  link.deliver({ type: 'update', v: PROTOCOL_VERSION, version: 8, delta: values, scales, bnStats: initialBnStats(layout) });
  const hello = await link.next('hello');
  assert.ok(hello.type === 'hello' && hello.workerId === 'w7');
  worker.stop('done');
  await running;
});

test('int8 run: a gradient the next update did not count is taken back out of the residual; a counted one stays in it', { timeout: 60_000 }, async (t) => {
  const link = new FakeLink();
  let version = -1;
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 }, onStatus: (s) => { version = s.version; } });
  const running = worker.start();
  t.after(() => worker.stop());
  await link.next('hello');
  const joined = welcome(3) as Extract<Message, { type: 'welcome' }>;
  link.deliver({ ...joined, run: { ...joined.run, codec: 'int8' } });
  const coordinator = new PublicWeights(getGradientCodec('int8'), joined.params);
  const update = (version: number, counted: number[]) => {
    const { values, scales } = coordinator.advance(joined.params);
    link.deliver({ type: 'update', v: PROTOCOL_VERSION, version, delta: values, scales, bnStats: initialBnStats(layout), counted: Int32Array.from(counted) });
  };
  const zero = (r: Float32Array | null) => r !== null && r.every((x) => x === 0);
  await until('the welcome', () => version === 3);
  assert.ok(zero(worker.residual()), 'a welcome starts from no residual');
  // Shard 5's reply came late (its range went to another worker): the update counts shard 9 only.
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 3, version: 3, shardId: 5, augmentSeed: 9, ...shardOf(8) });
  await link.next('gradient');
  assert.ok(!zero(worker.residual()), 'int8 rounding left a residual');
  update(4, [9]);
  await until('the update', () => version === 4);
  assert.ok(zero(worker.residual()), 'what shard 5 left is taken back: its examples were counted in shard 9');
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 4, version: 4, shardId: 6, augmentSeed: 9, ...shardOf(8) });
  await link.next('gradient');
  const kept = worker.residual()!;
  update(5, [6, 7]);
  await until('the update', () => version === 5);
  assert.deepEqual(worker.residual(), kept, 'a counted shard keeps its residual for the next gradient');
  worker.stop('done');
  await running;
});

test('low-rank run: sends its step\'s projection, takes each update\'s factors, and stops at a welcome whose factors do not fit', { timeout: 60_000 }, async (t) => {
  const plan = new LowRankPlan(layout.paramCount, layout.params, 2);
  assert.ok(plan.matrices.length > 0, 'the tiny model has matrices to compress at rank 2');
  const joined = welcome(3) as Extract<Message, { type: 'welcome' }>;
  {
    // Step 3 is a left step: an R-sized factor (a right step's) does not fit. The worker says
    // why and stops, rather than stay admitted and silent.
    const link = new FakeLink();
    const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 } });
    const running = worker.start();
    t.after(() => worker.stop());
    await link.next('hello');
    link.deliver({ ...joined, run: { ...joined.run, lowRank: 2 }, factors: new Float32Array(plan.factorLength('right')) });
    await assert.rejects(running, /cannot follow this coordinator's run: welcome: \d+ low-rank factor values; rank 2 at v3 needs \d+/);
    const bye = await link.next('bye');
    assert.ok(bye.type === 'bye' && /low-rank factor values/.test(bye.reason));
    assert.equal(worker.lowRankFactors(), null, 'nothing taken from the refused welcome');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(link.connects, 1, 'no reconnect');
  }
  const link = new FakeLink();
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 } });
  const running = worker.start();
  t.after(() => worker.stop());
  await link.next('hello');
  const left = plan.nextFactors(new Float32Array(plan.payloadLength('right')).map((_, i) => Math.sin(i)), 'right');
  link.deliver({ ...joined, run: { ...joined.run, lowRank: 2 }, factors: left });
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 3, version: 3, shardId: 5, augmentSeed: 9, ...shardOf(8) });
  const g = await link.next('gradient');
  assert.ok(g.type === 'gradient' && g.gradient instanceof Float32Array);
  assert.equal(g.gradient.length, plan.payloadLength('left'), 'a left step\'s projection');
  // The update to version 4 brings the right factors of step 4; the next gradient projects onto them.
  const right = plan.initialFactors(createRng(11));
  link.deliver({ type: 'update', v: PROTOCOL_VERSION, version: 4, params: joined.params, bnStats: initialBnStats(layout), factors: right });
  await until('the update\'s factors', () => Buffer.from(worker.lowRankFactors()!.buffer).equals(Buffer.from(right.buffer)));
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 4, version: 4, shardId: 6, augmentSeed: 9, ...shardOf(8) });
  const g2 = await link.next('gradient');
  assert.ok(g2.type === 'gradient' && g2.gradient.length === plan.payloadLength('right'), 'a right step\'s projection');
  worker.stop('done');
  await running;
  {
    // A first welcome and an update that arrive together: the update is parsed in its turn,
    // against the welcome's run. Its factors (a left step's, where v4 is a right step) do not
    // fit, and the worker rejoins rather than take them.
    const link = new FakeLink();
    const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 } });
    const running = worker.start();
    t.after(() => worker.stop());
    await link.next('hello');
    link.deliver({ ...joined, run: { ...joined.run, lowRank: 2 }, factors: left });
    link.deliver({ type: 'update', v: PROTOCOL_VERSION, version: 4, params: joined.params, bnStats: initialBnStats(layout), factors: left });
    const rejoin = await link.next('hello');
    assert.ok(rejoin.type === 'hello' && rejoin.workerId === 'w7');
    assert.ok(Buffer.from(worker.lowRankFactors()!.buffer).equals(Buffer.from(left.buffer)), "still the welcome's factors");
    worker.stop('done');
    await running;
  }
});

test('a welcome still queued behind a shard when the worker stops is not joined', { timeout: 60_000 }, async (t) => {
  const link = new FakeLink();
  const states: string[] = [];
  // Shards wait on this clock's sleep (slowdown) until the test lets them go.
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const clock = { now: () => performance.now(), sleep: (ms: number) => (ms > 0 && ms < 1000 ? new Promise<void>((r) => setTimeout(r, ms)) : held) };
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 }, slowdown: 1e9, clock, onStatus: (s) => states.push(s.state) });
  const running = worker.start();
  // Were the welcome joined after all, its heartbeat would keep this file running: end it.
  t.after(() => (worker as unknown as { stopHeartbeat(): void }).stopHeartbeat());
  await link.next('hello');
  link.deliver(welcome(0));
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 0, version: 0, shardId: 1, augmentSeed: 9, ...shardOf(8) });
  await until('the shard to be computing', () => states.includes('training'));
  link.deliver(welcome(0));
  worker.stop('done');
  await running;
  release();
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(states.at(-1), 'stopped', `states: ${states.join(' ')}`);
});
