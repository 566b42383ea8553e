/**
 * What a worker does with messages that belong to another connection or another run than the
 * one it is in: work queued on a connection that dropped, updates that do not fit the run
 * (also when they arrive in the same read as the welcome), a welcome this build cannot read, a
 * stop() while a connection opens.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initialBnStats, initialParams } from '@chorus/model';
import { LowRankPlan, PROTOCOL_VERSION, PublicWeights, encodeMessage, getGradientCodec, parseMessage, type Message } from '@chorus/protocol';
import { createRng } from '@chorus/data';
import { ChorusWorker, type Connect } from '../src/index.js';
import { FakeLink, layout, runtime, shardOf, until, welcome } from './fake-link.js';

await tf.setBackend('cpu');

type Welcome = Extract<Message, { type: 'welcome' }>;
const welcomeIn = (codec: 'fp32' | 'fp16' | 'int8', version = 3): Welcome => {
  const w = welcome(version) as Welcome;
  return { ...w, run: { ...w.run, codec } };
};
const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** A clock whose long sleeps (the slowdown after a shard) wait until the test lets them go, one release each. */
function heldClock() {
  const releases: (() => void)[] = [];
  const clock = {
    now: () => performance.now(),
    sleep: (ms: number) => (ms > 0 && ms < 1000 ? new Promise<void>((r) => setTimeout(r, ms)) : new Promise<void>((r) => releases.push(r))),
  };
  return { clock, release: () => releases.shift()?.(), get holding() { return releases.length > 0; } };
}

test('work queued on a connection that dropped is not answered on the next one, and its update does not close it', { timeout: 60_000 }, async (t) => {
  const link = new FakeLink();
  const held = heldClock();
  let version = -1;
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 }, slowdown: 1e9, clock: held.clock, onStatus: (s) => (version = s.version) });
  const running = worker.start();
  t.after(() => worker.stop());
  await link.next('hello');
  link.deliver(welcomeIn('int8', 3));
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 3, version: 3, shardId: 1, augmentSeed: 9, ...shardOf(8) });
  await until('shard 1 to be computed and held', () => held.holding);
  // More of connection 0's traffic, queued behind shard 1: shard 2, and an update two versions on.
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 3, version: 3, shardId: 2, augmentSeed: 9, ...shardOf(8) });
  const { values, scales } = new PublicWeights(getGradientCodec('int8'), initialParams(layout, 1)).advance(initialParams(layout, 2));
  link.deliver({ type: 'update', v: PROTOCOL_VERSION, version: 5, delta: values, scales, bnStats: initialBnStats(layout), counted: new Int32Array() });
  // Connection 0 drops; the worker reconnects and is welcomed on connection 1.
  link.connections[0]!.onClose(1006, 'network lost');
  await until('the hello on connection 1', () => link.log.some((e) => e.connection === 1 && e.message.type === 'hello'));
  link.deliver(welcomeIn('int8', 4), 1);
  held.release();
  await until('the welcome on connection 1', () => version === 4);
  // Connection 1 works: its own shard is answered on it.
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 4, version: 4, shardId: 9, augmentSeed: 9, ...shardOf(8) });
  await until('shard 9 to be held', () => held.holding);
  held.release();
  await until('the gradient of shard 9', () => link.log.some((e) => e.message.type === 'gradient' && e.message.shardId === 9));
  const answered = link.log.filter((e) => e.message.type === 'gradient').map((e) => `${(e.message as { shardId: number }).shardId}@${e.connection}`);
  assert.deepEqual(answered, ['9@1'], "connection 0's shards 1 and 2 are answered nowhere");
  assert.deepEqual(link.closedByWorker, [], "connection 0's stale update closed nothing");
  assert.ok(worker.residual()!.some((x) => x !== 0) && link.connects === 2);
  worker.stop('done');
  await running;
});

test('stop() while a connection opens: the connection is closed, and no hello goes out on it', { timeout: 30_000 }, async () => {
  let open!: () => void;
  const sent: string[] = [];
  let closed = 0;
  const connect: Connect = () => new Promise((resolve) => (open = () => resolve({ send: (f) => sent.push(parseMessage(f).type), close: () => void closed++ })));
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect, runtime });
  const running = worker.start();
  await until('the connection to be opening', () => open !== undefined);
  worker.stop('bye');
  await running;
  open();
  await until('the late connection to be closed', () => closed === 1);
  assert.deepEqual(sent, []);
});

test('an fp32 run given a delta instead of full params rejoins rather than advance on weights it never changed', { timeout: 60_000 }, async (t) => {
  const link = new FakeLink();
  const versions: number[] = [];
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 }, onStatus: (s) => versions.push(s.version) });
  const running = worker.start();
  t.after(() => worker.stop());
  await link.next('hello');
  link.deliver(welcomeIn('fp32', 3));
  // A float32 delta is fp32's dtype: before, it passed the run's checks and was not applied.
  link.deliver({ type: 'update', v: PROTOCOL_VERSION, version: 4, delta: initialParams(layout, 2), bnStats: initialBnStats(layout) });
  const hello = await link.next('hello');
  assert.ok(hello.type === 'hello' && hello.workerId === 'w7');
  assert.deepEqual(link.closedByWorker, [0]);
  assert.ok(!versions.includes(4), `versions: ${versions.join(' ')}`);
  worker.stop('done');
  await running;
});

test('an update in the same read as the first welcome is held to that welcome\'s run: a wrong codec or BatchNorm length makes the worker rejoin, its weights untouched', { timeout: 60_000 }, async (t) => {
  const int8 = new PublicWeights(getGradientCodec('int8'), initialParams(layout, 1)).advance(initialParams(layout, 2));
  const fp16 = new PublicWeights(getGradientCodec('fp16'), initialParams(layout, 1)).advance(initialParams(layout, 2));
  const cases: [string, Message][] = [
    ['an int8 delta in an fp16 run', { type: 'update', v: PROTOCOL_VERSION, version: 4, delta: int8.values, scales: int8.scales, bnStats: initialBnStats(layout) }],
    ['BatchNorm statistics of the wrong length', { type: 'update', v: PROTOCOL_VERSION, version: 4, delta: fp16.values, bnStats: new Float32Array(3) }],
    ['full params in a compressed run', { type: 'update', v: PROTOCOL_VERSION, version: 4, params: initialParams(layout, 2), bnStats: initialBnStats(layout) }],
  ];
  for (const [what, update] of cases) {
    const link = new FakeLink();
    const versions: number[] = [];
    const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 }, onStatus: (s) => versions.push(s.version) });
    const running = worker.start();
    t.after(() => worker.stop());
    await link.next('hello');
    // One read: ws hands both frames over in the same tick, before the welcome is applied.
    link.events!.onMessage(encodeMessage(welcomeIn('fp16', 3)));
    link.events!.onMessage(encodeMessage(update));
    await link.next('hello');
    assert.deepEqual(link.closedByWorker, [0], what);
    assert.ok(!versions.includes(4), `${what}: versions ${versions.join(' ')}`);
    const expected = new PublicWeights(getGradientCodec('fp16'), initialParams(layout, 1)).weights;
    assert.ok(bytes(worker.publicWeights()!).equals(bytes(expected)), `${what}: the public weights are the welcome's`);
    worker.stop('done');
    await running;
  }
});

test('a welcome this build cannot read (a codec it does not know) ends the worker with the reason', { timeout: 30_000 }, async () => {
  const link = new FakeLink();
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 } });
  const running = worker.start();
  await link.next('hello');
  const w = welcomeIn('fp32', 0);
  // encodeMessage does not validate: this is what a newer coordinator would send.
  link.deliver({ ...w, run: { ...w.run, codec: 'bf16' as 'fp32' } });
  await assert.rejects(running, /cannot follow this coordinator's run: .*codec/);
  const bye = await link.next('bye');
  assert.ok(bye.type === 'bye' && /codec/.test(bye.reason));
  assert.equal(link.connects, 1, 'no reconnect');
});

test('an assignment whose step is not its version, and an evaluation of other weights, are skipped', { timeout: 60_000 }, async (t) => {
  const link = new FakeLink();
  const logs: string[] = [];
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, log: (_level, message) => logs.push(message) });
  const running = worker.start();
  t.after(() => worker.stop());
  await link.next('hello');
  link.deliver(welcomeIn('int8', 3));
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 2, version: 3, shardId: 1, augmentSeed: 9, ...shardOf(4) });
  const { labels, pixels } = shardOf(4);
  link.deliver({ type: 'evaluate', v: PROTOCOL_VERSION, evalId: 1, shardId: 2, version: 2, labels, pixels });
  link.deliver({ type: 'evaluate', v: PROTOCOL_VERSION, evalId: 2, shardId: 3, version: 3, labels, pixels });
  const result = await link.next('evalResult');
  assert.ok(result.type === 'evalResult' && result.evalId === 2);
  assert.equal(link.sent.filter((m) => m.type === 'gradient' || m.type === 'evalResult').length, 0);
  assert.ok(logs.includes('skipped an assignment for other weights') && logs.includes('skipped an evaluation of other weights'), logs.join('\n'));
  assert.ok(worker.residual()!.every((x) => x === 0), 'nothing was encoded');
  worker.stop('done');
  await running;
});

test('a low-rank run that misses an update rejoins even under fp32, whose updates carry the whole weights', { timeout: 60_000 }, async (t) => {
  // The missed update was the one to say whether this worker's shard counted: under low-rank
  // gradients what its residual kept of that shard is most of a gradient.
  const plan = new LowRankPlan(layout.paramCount, layout.params, 2);
  const link = new FakeLink();
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 } });
  const running = worker.start();
  t.after(() => worker.stop());
  await link.next('hello');
  const joined = welcomeIn('fp32', 4);
  link.deliver({ ...joined, run: { ...joined.run, lowRank: 2 }, factors: plan.initialFactors(createRng(3)) });
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 4, version: 4, shardId: 5, augmentSeed: 9, ...shardOf(8) });
  await link.next('gradient');
  assert.ok(worker.residual()!.some((x) => x !== 0), 'the projection left a residual');
  // Version 6 while holding 4: whether shard 5 counted at step 4 went by in the missed update.
  link.deliver({ type: 'update', v: PROTOCOL_VERSION, version: 6, params: joined.params, bnStats: initialBnStats(layout), factors: plan.initialFactors(createRng(4)) });
  const hello = await link.next('hello');
  assert.ok(hello.type === 'hello' && hello.workerId === 'w7');
  assert.deepEqual(link.closedByWorker, [0]);
  worker.stop('done');
  await running;
});

test('once the worker closes a connection to rejoin, nothing more of it is handled, even before the close completes', { timeout: 60_000 }, async (t) => {
  const link = new FakeLink();
  link.holdCloses = true;
  const states: string[] = [];
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 }, onStatus: (s) => states.push(`${s.state}@v${s.version}`) });
  const running = worker.start();
  t.after(() => worker.stop());
  await link.next('hello');
  link.deliver(welcomeIn('fp32', 3));
  link.deliver({ type: 'update', v: PROTOCOL_VERSION, version: 4, params: initialParams(layout, 2), bnStats: new Float32Array(3) });
  // What the coordinator sent before it saw the close: full weights again, and a shard at them.
  link.deliver({ type: 'update', v: PROTOCOL_VERSION, version: 5, params: initialParams(layout, 2), bnStats: initialBnStats(layout) });
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 5, version: 5, shardId: 1, augmentSeed: 9, ...shardOf(4) });
  await until('the close', () => link.closedByWorker.length === 1);
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(!states.some((s) => s.startsWith('training') || s.endsWith('@v5')), states.join(' '));
  assert.deepEqual(link.log.filter((e) => e.message.type !== 'hello').map((e) => e.message.type), [], 'no gradient and no heartbeat into the closing connection');
  worker.stop('done');
  await running;
});

test('a coordinator whose updates never fit is rejoined with growing back-off, not in a loop', { timeout: 60_000 }, async (t) => {
  const link = new FakeLink();
  const waits: number[] = [];
  const clock = { now: () => performance.now(), sleep: (ms: number) => (waits.push(ms), Promise.resolve()) };
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 10_000 }, clock });
  const running = worker.start();
  t.after(() => worker.stop());
  for (let i = 0; i < 5; i++) {
    await link.next('hello');
    // An fp32 run that sends deltas: no update of it can be applied.
    link.deliver(welcomeIn('fp32', 3));
    link.deliver({ type: 'update', v: PROTOCOL_VERSION, version: 4, delta: initialParams(layout, 2), bnStats: initialBnStats(layout) });
    await until(`rejoin ${i + 1}`, () => link.closedByWorker.length === i + 1);
  }
  await link.next('hello');
  worker.stop('done');
  await running;
  // backoffDelay draws each wait between half and all of 10 ms x 2^n: the fifth is at least 160 ms.
  assert.equal(waits.length, 5, waits.join(' '));
  assert.ok(waits[4]! >= 160 && waits[4]! > 4 * waits[0]!, `waits: ${waits.map((w) => w.toFixed(0)).join(' ')}`);
});

test('heartbeats keep to a sane interval whatever the welcome asks, and start before a rejoin\'s welcome', { timeout: 60_000 }, async (t) => {
  const link = new FakeLink();
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 10, maxMs: 20 } });
  const running = worker.start();
  t.after(() => worker.stop());
  await link.next('hello');
  const joined = welcomeIn('fp32', 3);
  // Past 2^31 - 1 ms Node's timers fire every millisecond.
  link.deliver({ ...joined, run: { ...joined.run, heartbeatMs: 3e9 } });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(link.log.filter((e) => e.message.type === 'heartbeat').length, 0, 'no heartbeat flood');
  // Rejoin: a shard of connection 0 may still be computing, so no welcome comes yet on 1. The
  // coordinator hears from the worker all the same.
  link.deliver(joined);
  await until('the ordinary welcome', () => link.log.filter((e) => e.message.type === 'heartbeat').length > 0);
  link.connections[0]!.onClose(1006, 'network lost');
  await until('a heartbeat on connection 1 before any welcome there', () => link.log.some((e) => e.connection === 1 && e.message.type === 'heartbeat'));
  worker.stop('done');
  await running;
});

test('error feedback goes on across a rejoin to the same run once every shard is settled, and starts again after a jump back, another run or an open shard', { timeout: 60_000 }, async (t) => {
  const link = new FakeLink();
  let version = -1;
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 1, maxMs: 2 }, onStatus: (s) => (version = s.version) });
  const running = worker.start();
  t.after(() => worker.stop());
  const rejoin = async (w: Welcome) => {
    const connection = link.connections.length - 1;
    link.connections[connection]!.onClose(1006, 'network lost');
    await until('the hello of the rejoin', () => link.log.some((e) => e.connection === connection + 1 && e.message.type === 'hello'));
    version = -1;
    link.deliver(w);
    await until('its welcome', () => version === w.version);
  };
  await link.next('hello');
  const joined = welcomeIn('int8', 3);
  link.deliver(joined);
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 3, version: 3, shardId: 5, augmentSeed: 9, ...shardOf(8) });
  await link.next('gradient');
  const pub = new PublicWeights(getGradientCodec('int8'), joined.params);
  const { values, scales } = pub.advance(initialParams(layout, 2));
  link.deliver({ type: 'update', v: PROTOCOL_VERSION, version: 4, delta: values, scales, bnStats: initialBnStats(layout), counted: Int32Array.of(5) });
  await until('the update', () => version === 4);
  const kept = worker.residual()!;
  assert.ok(kept.some((x) => x !== 0), 'int8 rounding left a residual');
  // A blip: the same run at the same step. Shard 5 was settled (counted), so the residual goes on.
  await rejoin({ ...joined, version: 4, params: pub.weights.slice() });
  assert.ok(bytes(worker.residual()!).equals(bytes(kept)), 'the residual goes on, bit for bit');
  // A coordinator resumed from an earlier checkpoint: the steps it lost counted part of it.
  await rejoin({ ...joined, version: 2 });
  assert.ok(worker.residual()!.every((x) => x === 0), 'a jump back starts it again');
  // An open shard: whether it counts went by with the connection.
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 2, version: 2, shardId: 6, augmentSeed: 9, ...shardOf(8) });
  await link.next('gradient');
  assert.ok(worker.residual()!.some((x) => x !== 0));
  await rejoin({ ...joined, version: 2 });
  assert.ok(worker.residual()!.every((x) => x === 0), 'an unsettled shard starts it again');
  // Another run (fp16 now): its residual would be another codec's rounding.
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 2, version: 2, shardId: 7, augmentSeed: 9, ...shardOf(8) });
  await link.next('gradient');
  const again = new PublicWeights(getGradientCodec('int8'), joined.params);
  const next = again.advance(initialParams(layout, 2));
  link.deliver({ type: 'update', v: PROTOCOL_VERSION, version: 3, delta: next.values, scales: next.scales, bnStats: initialBnStats(layout), counted: Int32Array.of(7) });
  await until('the update', () => version === 3);
  assert.ok(worker.residual()!.some((x) => x !== 0));
  await rejoin({ ...welcomeIn('fp16', 3) });
  assert.ok(worker.residual()!.every((x) => x === 0), 'another run starts it again');
  worker.stop('done');
  await running;
});

test('a low-rank run keeps its residual across a rejoin to the same step, once its shards are settled', { timeout: 60_000 }, async (t) => {
  const plan = new LowRankPlan(layout.paramCount, layout.params, 2);
  const link = new FakeLink();
  let version = -1;
  const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 1, maxMs: 2 }, onStatus: (s) => (version = s.version) });
  const running = worker.start();
  t.after(() => worker.stop());
  await link.next('hello');
  const base = welcomeIn('fp32', 4);
  const joined: Welcome = { ...base, run: { ...base.run, lowRank: 2 }, factors: plan.initialFactors(createRng(3)) };
  link.deliver(joined);
  link.deliver({ type: 'assign', v: PROTOCOL_VERSION, step: 4, version: 4, shardId: 5, augmentSeed: 9, ...shardOf(8) });
  await link.next('gradient');
  const left = plan.nextFactors(new Float32Array(plan.payloadLength('right')).map((_, i) => Math.cos(i)), 'right');
  link.deliver({ type: 'update', v: PROTOCOL_VERSION, version: 5, params: base.params, bnStats: initialBnStats(layout), factors: left, counted: Int32Array.of(5) });
  await until('the update', () => version === 5);
  const kept = worker.residual()!;
  assert.ok(kept.some((x) => x !== 0), 'the projection left a residual');
  link.connections[0]!.onClose(1006, 'network lost');
  await until('the rejoin', () => link.log.some((e) => e.connection === 1 && e.message.type === 'hello'));
  version = -1;
  link.deliver({ ...joined, version: 5, factors: left });
  await until('its welcome', () => version === 5);
  assert.ok(bytes(worker.residual()!).equals(bytes(kept)), 'what the projections left out so far goes on');
  worker.stop('done');
  await running;
});
