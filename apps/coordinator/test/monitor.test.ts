import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { concatSplits, type Cifar10Split } from '@chorus/data';
import { PRESETS } from '@chorus/model';
import { ChorusServer, Coordinator, DEFAULT_RUN_OPTIONS, createLogger, createMetrics } from '../src/index.js';

const split: Cifar10Split = { count: 64, labels: new Uint8Array(64), pixels: new Uint8Array(64 * 3072) };
const data = { train: concatSplits([split]), test: split };
const metrics = createMetrics();
const coordinator = new Coordinator({
  config: {
    preset: 'tiny', spec: PRESETS.tiny, batch: 16, steps: 2, lr: 0.1, optimizer: 'sgd', weightDecay: 0,
    warmupSteps: 0, schedule: 'constant', bnGroup: 8, seed: 1, augment: false,
  },
  options: { ...DEFAULT_RUN_OPTIONS, checkpointEvery: 0 },
  data,
  token: 'sesame',
  log: createLogger({ quiet: true }),
  metrics,
});
const server = new ChorusServer({ host: '127.0.0.1', port: 0, coordinator, metrics, log: createLogger({ quiet: true }) });
const { port } = await server.listen();
const base = `http://127.0.0.1:${port}`;

/** Waits (polling, bounded) until `ready` holds. */
async function until(what: string, ready: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const control = (action: string, token?: string) =>
  fetch(`${base}/api/control`, {
    method: 'POST',
    headers: token ? { authorization: `Bearer ${token}` } : {},
    body: JSON.stringify({ action }),
  });

test('a watcher gets a snapshot of the run, then events as they happen', { timeout: 30_000 }, async () => {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/monitor`);
  const messages: { type: string; event?: { kind: string } }[] = [];
  socket.on('message', (data) => messages.push(JSON.parse(data.toString())));
  await new Promise((r) => socket.once('open', r));
  await until('the snapshot', () => messages.length > 0);
  assert.equal(messages[0].type, 'snapshot');
  const snapshot = messages[0] as unknown as { status: { preset: string; step: number }; steps: unknown[]; events: unknown[] };
  assert.equal(snapshot.status.preset, 'tiny');
  assert.deepEqual(snapshot.steps, []);
  assert.equal((await control('pause', 'sesame')).status, 200);
  await until('the pause event', () => messages.some((m) => m.type === 'event' && m.event?.kind === 'pause'));
  socket.close();
});

test('controls need the token; pause and resume change the run state', { timeout: 30_000 }, async () => {
  const refused = await control('pause');
  assert.equal(refused.status, 401);
  assert.match((await refused.json()).error, /token/);
  assert.equal((await control('pause', 'wrong')).status, 401);
  assert.equal((await control('explode', 'sesame')).status, 400);
  assert.equal((await control('resume', 'sesame')).status, 200);
  assert.equal(coordinator.isPaused, false);
  assert.equal((await control('pause', 'sesame')).status, 200);
  assert.equal(coordinator.isPaused, true);
  const status = await (await fetch(`${base}/api/status`)).json();
  assert.equal(status.paused, true);
  // No checkpoint directory: refused with the reason, not a crash.
  assert.equal((await control('checkpoint', 'sesame')).status, 409);
  assert.match(await (await fetch(`${base}/metrics`)).text(), /chorus_messages_refused_total\{reason="bad-token"\} 2/);
});

test('unknown WebSocket paths are refused; the server closes cleanly', { timeout: 30_000 }, async () => {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/nope`);
  await new Promise<void>((resolve) => socket.once('error', () => resolve()));
  await server.close();
});
