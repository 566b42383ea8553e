import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { concatSplits, type Cifar10Split } from '@chorus/data';
import { PRESETS } from '@chorus/model';
import { PROTOCOL_VERSION, decodeFrame, encodeMessage, type Message } from '@chorus/protocol';
import { ChorusServer, Coordinator, DEFAULT_RUN_OPTIONS, createLogger, createMetrics } from '../src/index.js';

const split: Cifar10Split = { count: 64, labels: new Uint8Array(64), pixels: new Uint8Array(64 * 3072) };
const data = { train: concatSplits([split]), test: split };

async function until(probe: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("a worker's first shard pays for warm-up: it is not called a straggler at the usual deadline", { timeout: 30_000 }, async () => {
  let now = 0;
  const log = createLogger({ quiet: true, write: () => undefined });
  const metrics = createMetrics();
  const coordinator = new Coordinator({
    config: {
      preset: 'tiny', spec: PRESETS.tiny, batch: 16, steps: 1, lr: 0.1, optimizer: 'sgd', weightDecay: 0,
      warmupSteps: 0, schedule: 'constant', bnGroup: 8, seed: 1, augment: false,
    },
    options: { ...DEFAULT_RUN_OPTIONS, checkpointEvery: 0, evalExamples: 0, heartbeatTimeoutMs: 1e12 },
    data,
    token: 't',
    log,
    metrics,
    now: () => now,
  });
  const server = new ChorusServer({ host: '127.0.0.1', port: 0, coordinator, metrics, log });
  const { port } = await server.listen();
  const running = coordinator.run();
  // A worker that takes its first shard and then computes for a long time (never answers here).
  const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  let assigned = false;
  socket.on('message', (data: Buffer) => {
    if ((decodeFrame(new Uint8Array(data)) as { type: string }).type === 'assign') assigned = true;
  });
  try {
    await new Promise((r) => socket.once('open', r));
    socket.send(encodeMessage({ type: 'hello', v: PROTOCOL_VERSION, token: 't', runtime: { kind: 'node', backend: 'test', device: 'test', cores: 1, microBatch: 8, agent: 'slow starter' } } as Message));
    await until(() => assigned);
    const stragglerEvents = () => coordinator.history.events.filter((e) => e.kind === 'straggler');
    now = 3 * DEFAULT_RUN_OPTIONS.minDeadlineMs; // well past the usual deadline floor
    await new Promise((r) => setTimeout(r, 600)); // two sweeps
    assert.deepEqual(stragglerEvents(), [], 'no straggler while the first shard warms up');
    assert.equal(coordinator.status().workers[0].state, 'training');
    now = DEFAULT_RUN_OPTIONS.firstShardDeadlineMs + 1;
    await until(() => stragglerEvents().length === 1);
    assert.match(stragglerEvents()[0].message, /has not finished its first shard in \d+ s \(warm-up included\)/);
  } finally {
    socket.terminate();
    coordinator.stop();
    await running;
    await server.close();
  }
});
