import { test } from 'node:test';
import assert from 'node:assert/strict';
import { concatSplits, type Cifar10Split } from '@chorus/data';
import { PRESETS } from '@chorus/model';
import { PROTOCOL_VERSION, getGradientCodec, parseMessage, type Hello, type Message, type Update } from '@chorus/protocol';
import { Coordinator, DEFAULT_RUN_OPTIONS, createLogger, createMetrics, type Connection } from '../src/index.js';

const split: Cifar10Split = { count: 64, labels: new Uint8Array(64), pixels: new Uint8Array(64 * 3072) };
const data = { train: concatSplits([split]), test: split };

function coordinator(): Coordinator {
  return new Coordinator({
    config: { preset: 'tiny', spec: PRESETS.tiny, batch: 16, steps: 1, lr: 0.1, optimizer: 'sgd', weightDecay: 0, warmupSteps: 0, schedule: 'constant', bnGroup: 8, seed: 1, augment: false },
    options: { ...DEFAULT_RUN_OPTIONS, checkpointEvery: 0 },
    data,
    token: 't',
    log: createLogger({ quiet: true, write: () => undefined }),
    metrics: createMetrics(),
  });
}

/** A connection that records what it is sent. */
function fakeConnection(id: number): Connection & { messages: Message[] } {
  const messages: Message[] = [];
  return { id, bytesIn: 0, bytesOut: 0, open: true, messages, send: (m: Message) => messages.push(m), sendFrame() {}, close() {}, terminate() {} } as unknown as Connection & { messages: Message[] };
}

const hello = (workerId?: string): Hello => ({
  type: 'hello', v: PROTOCOL_VERSION, token: 't', ...(workerId ? { workerId } : {}),
  runtime: { kind: 'node', backend: 'test', device: 'test', cores: 1, microBatch: 8, agent: 'fleet.test' },
});

test("a stale socket's close does not remove a worker that has already rejoined on a new one", () => {
  const c = coordinator();
  const first = fakeConnection(1);
  const worker = c.fleet.admit(first, hello());
  assert.equal(first.messages[0]?.type, 'welcome');
  c.fleet.depart(worker, 'timed out (silent for 61 s)'); // the heartbeat sweep, before the socket closes
  const second = fakeConnection(2);
  const back = c.fleet.admit(second, hello(worker.id));
  assert.equal(back, worker, 'the same record, id and measured speed');
  assert.equal(back.state, 'ready');
  c.fleet.depart(worker, 'disconnected (1006)', first); // the old socket's close arrives late
  assert.equal(worker.state, 'ready', 'still in the run');
  assert.equal(c.membership.ready().length, 1);
  c.fleet.depart(worker, 'disconnected (1006)', second);
  assert.equal(worker.state, 'left');
  assert.deepEqual(c.history.events.filter((e) => e.kind === 'leave').length, 2);
});

test('replies for shards that were never sent to this worker are refused; heartbeats and bye are handled', () => {
  const c = coordinator();
  const conn = fakeConnection(1);
  const worker = c.fleet.admit(conn, hello());
  const { paramCount, bnStatCount } = c.layout;
  const gradient = { type: 'gradient', v: PROTOCOL_VERSION, step: 0, shardId: 7, count: 8, lossSum: 1, correct: 1, computeMs: 1, gradient: new Float32Array(paramCount), bnMoments: new Float32Array(bnStatCount) } as Message;
  assert.equal(c.fleet.receive(worker, gradient)?.code, 'bad-gradient');
  const evalResult = { type: 'evalResult', v: PROTOCOL_VERSION, evalId: 1, shardId: 7, count: 8, lossSum: 1, correct: 1 } as Message;
  assert.equal(c.fleet.receive(worker, evalResult)?.code, 'malformed');
  assert.equal(c.fleet.receive(worker, { type: 'heartbeat', v: PROTOCOL_VERSION, time: 1, hidden: true } as Message), null);
  assert.equal(worker.hidden, true);
  assert.equal(c.fleet.receive(worker, { type: 'welcome' } as unknown as Message)?.code, 'malformed');
  assert.equal(c.fleet.receive(worker, { type: 'bye', v: PROTOCOL_VERSION, reason: 'done' } as Message), null);
  assert.equal(worker.state, 'left');
});

test("each update names the shards whose gradients it applied, so a worker whose reply was not counted can take it back", { timeout: 30_000 }, async () => {
  const { c, fast, slow, assignOf, answer } = int8Run(2);
  const running = c.run();
  const answered: number[][] = [];
  for (let step = 0; step < 2; step++) {
    await answer(fast, step);
    await answer(slow, step);
    answered.push([assignOf(fast, step)!.shardId, assignOf(slow, step)!.shardId].sort((a, b) => a - b));
  }
  await running;
  assert.deepEqual(fast.conn.updates.map((u) => u.version), [1, 2]);
  assert.deepEqual(fast.conn.updates.map((u) => [...u.counted!].sort((a, b) => a - b)), answered);
});

/** Two fake workers of an int8 run over connections whose backlog (`buffered`) the test sets. */
function int8Run(steps = 4) {
  const c = new Coordinator({
    config: { preset: 'tiny', spec: PRESETS.tiny, batch: 16, steps, lr: 0.1, optimizer: 'sgd', weightDecay: 0, warmupSteps: 0, schedule: 'constant', bnGroup: 8, seed: 1, augment: false, codec: 'int8' },
    options: { ...DEFAULT_RUN_OPTIONS, minWorkers: 2, evalEvery: 0, evalExamples: 0, checkpointEvery: 0 },
    data,
    token: 't',
    log: createLogger({ quiet: true, write: () => undefined }),
    metrics: createMetrics(),
  });
  const { paramCount, bnStatCount } = c.layout;
  const codec = getGradientCodec('int8');
  const workers = [1, 2].map((id) => {
    const conn = fakeConnection(id) as ReturnType<typeof fakeConnection> & { buffered: number; updates: Update[]; welcomedWith: Float32Array[] };
    conn.buffered = 0;
    conn.updates = [];
    conn.welcomedWith = [];
    (conn as unknown as { sendFrame: (frame: Uint8Array) => void }).sendFrame = (frame) => {
      const m = parseMessage(frame);
      if (m.type === 'update') conn.updates.push(m);
    };
    const send = conn.send;
    (conn as unknown as { send: (m: Message) => void }).send = (m) => {
      // What the coordinator's workers hold when it welcomes: its public weights, not its master's.
      if (m.type === 'welcome') conn.welcomedWith.push(c.workerParams.slice());
      send(m);
    };
    return { conn, record: c.fleet.admit(conn, hello()) };
  });
  const until = async (what: string, ready: () => boolean) => {
    const deadline = Date.now() + 10_000;
    while (!ready()) {
      assert.ok(Date.now() < deadline, what);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  type Worker = (typeof workers)[number];
  const versions = (w: Worker) => w.conn.updates.map((u) => u.version);
  const assignOf = (w: Worker, step: number) => w.conn.messages.find((m): m is Extract<Message, { type: 'assign' }> => m.type === 'assign' && m.step === step);
  const answer = async (w: Worker, step: number) => {
    await until(`an assign for step ${step} (${w.conn.messages.map((m) => m.type + ('step' in m ? m.step : '')).join(' ')})`, () => assignOf(w, step) !== undefined);
    const assign = assignOf(w, step)!;
    const { values, scales } = codec.encode(new Float32Array(paramCount));
    const refusal = c.fleet.receive(w.record, { type: 'gradient', v: PROTOCOL_VERSION, step, shardId: assign.shardId, count: assign.indices.length, lossSum: 1, correct: 0, computeMs: 1, gradient: values, scales, bnMoments: new Float32Array(bnStatCount) } as Message);
    assert.equal(refusal, null);
  };
  return { c, fast: workers[0]!, slow: workers[1]!, until, assignOf, answer, versions };
}

test('a worker whose link falls behind the run gets no more updates or shares until its socket drains, then the weights in full', { timeout: 30_000 }, async () => {
  const { c, fast, slow, until, assignOf, answer, versions } = int8Run();
  const running = c.run();
  await answer(fast, 0);
  await answer(slow, 0);
  await until('update v1 to both, and a share of step 1', () => versions(slow).includes(1) && assignOf(slow, 1) !== undefined);
  // Its link now holds far more than two updates not yet sent.
  slow.conn.buffered = 1e9;
  await answer(fast, 1);
  await answer(slow, 1);
  await until('update v2', () => versions(fast).includes(2));
  assert.deepEqual(versions(slow), [1], 'no update queued behind a link that has not sent the last ones');
  assert.equal(slow.record.behind, true);
  assert.ok(c.history.events.some((e) => e.kind === 'behind' && e.message.includes(slow.record.id)));
  assert.match(c.status().workers.find((w) => w.id === slow.record.id)!.idleReason ?? '', /behind the run/);
  // Step 2 goes to the worker that keeps up, all of it.
  await until('an assign for step 2', () => assignOf(fast, 2) !== undefined);
  assert.equal(assignOf(fast, 2)!.indices.length, 16);
  assert.equal(assignOf(slow, 2), undefined, 'no share for a worker behind');
  // Its link catches up: at the next tick or update it is sent the public weights in full.
  slow.conn.buffered = 0;
  await answer(fast, 2);
  await until('the resync', () => slow.conn.welcomedWith.length === 2);
  const resync = slow.conn.messages.filter((m) => m.type === 'welcome').at(-1)!;
  assert.ok(resync.type === 'welcome' && (resync.version === 2 || resync.version === 3), `welcomed again at v${resync.type === 'welcome' && resync.version}`);
  assert.ok(Buffer.from(resync.params.buffer, resync.params.byteOffset, resync.params.byteLength).equals(Buffer.from(slow.conn.welcomedWith[1]!.buffer)), "the welcome carries the coordinator's public weights");
  assert.ok(c.history.events.some((e) => e.kind === 'caught-up' && e.message.includes(slow.record.id)));
  await answer(fast, 3);
  await answer(slow, 3);
  await running;
  assert.equal(c.step, 4);
  // The updates it missed are not sent after all: the welcome stands for them.
  assert.deepEqual(versions(slow), [1, ...[3, 4].filter((v) => v > resync.version)]);
});

test('a worker whose socket still holds more than the last update gets no share until it has sent it, without falling behind', { timeout: 30_000 }, async () => {
  const { c, fast, slow, until, assignOf, answer, versions } = int8Run();
  const running = c.run();
  // More than an update and an assignment's images, less than the lag limit: an assign now would
  // wait behind the backlog, past its deadline.
  slow.conn.buffered = 500_000;
  await answer(fast, 0);
  await answer(slow, 0);
  await until('an assign for step 1', () => assignOf(fast, 1) !== undefined);
  assert.equal(assignOf(fast, 1)!.indices.length, 16, 'the whole batch to the worker without a backlog');
  assert.equal(assignOf(slow, 1), undefined);
  const row = c.status().workers.find((w) => w.id === slow.record.id)!;
  assert.equal(row.state, 'idle');
  assert.match(row.idleReason ?? '', /its link still holds earlier messages/, 'the dashboard says why');
  slow.conn.buffered = 0;
  await answer(fast, 1);
  await answer(fast, 2);
  await answer(slow, 2);
  await answer(fast, 3);
  await answer(slow, 3);
  await running;
  assert.equal(slow.record.behind, false);
  assert.ok(!c.history.events.some((e) => e.kind === 'behind'));
  assert.deepEqual(versions(slow), [1, 2, 3, 4], 'it was sent every update');
});
