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
  const c = new Coordinator({
    config: { preset: 'tiny', spec: PRESETS.tiny, batch: 16, steps: 2, lr: 0.1, optimizer: 'sgd', weightDecay: 0, warmupSteps: 0, schedule: 'constant', bnGroup: 8, seed: 1, augment: false, codec: 'int8' },
    options: { ...DEFAULT_RUN_OPTIONS, minWorkers: 2, evalEvery: 0, evalExamples: 0, checkpointEvery: 0 },
    data,
    token: 't',
    log: createLogger({ quiet: true, write: () => undefined }),
    metrics: createMetrics(),
  });
  const { paramCount, bnStatCount } = c.layout;
  const codec = getGradientCodec('int8');
  const updates: Update[] = [];
  const answered: number[][] = [];
  const workers = [1, 2].map((id) => {
    const conn = fakeConnection(id);
    // Updates go out as one frame for everyone; assigns one by one.
    (conn as unknown as { sendFrame: (frame: Uint8Array) => void }).sendFrame = (frame) => {
      const m = parseMessage(frame);
      if (m.type === 'update' && id === 1) updates.push(m);
    };
    return { conn, record: c.fleet.admit(conn, hello()) };
  });
  const running = c.run();
  for (let step = 0; step < 2; step++) {
    const ids: number[] = [];
    for (const { conn, record } of workers) {
      const deadline = Date.now() + 10_000;
      let assign: Extract<Message, { type: 'assign' }> | undefined;
      while (!(assign = conn.messages.find((m): m is Extract<Message, { type: 'assign' }> => m.type === 'assign' && m.step === step))) {
        assert.ok(Date.now() < deadline, `an assign for step ${step}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      ids.push(assign.shardId);
      const { values, scales } = codec.encode(new Float32Array(paramCount));
      const refusal = c.fleet.receive(record, { type: 'gradient', v: PROTOCOL_VERSION, step, shardId: assign.shardId, count: assign.indices.length, lossSum: 1, correct: 0, computeMs: 1, gradient: values, scales, bnMoments: new Float32Array(bnStatCount) } as Message);
      assert.equal(refusal, null);
    }
    answered.push(ids.sort((a, b) => a - b));
  }
  await running;
  assert.equal(updates.length, 2);
  assert.deepEqual(updates.map((u) => [...u.counted!].sort((a, b) => a - b)), answered);
});
