import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import * as tf from '@tensorflow/tfjs';
import { selectNodeBackend } from '@chorus/backend/node';
import { ChorusServer, Coordinator, DEFAULT_RUN_OPTIONS, createLogger, createMetrics, type RunConfig } from '@chorus/coordinator';
import { loadCifar10 } from '@chorus/data/node';
import { PRESETS } from '@chorus/model';
import { connectWs } from '@chorus/node-worker';
import { CLOSE_CODES, PROTOCOL_VERSION, encodeMessage, parseMessage, type Message } from '@chorus/protocol';
import { ChorusWorker } from '@chorus/worker';
import { bounded, cifarDir, waitFor } from './support.js';

tf.env().set('PROD', true);
await selectNodeBackend({ force: 'wasm' });
const data = await loadCifar10(cifarDir);

const config: RunConfig = {
  preset: 'tiny', spec: PRESETS.tiny, batch: 16, steps: 3, lr: 0.1, optimizer: 'sgd', weightDecay: 0,
  warmupSteps: 0, schedule: 'constant', bnGroup: 8, seed: 1, augment: false,
};
const runtime = { kind: 'node' as const, backend: 'wasm', device: 'test', cores: 1, microBatch: 64, agent: 'test' };
const metrics = createMetrics();
const coordinator = new Coordinator({
  config,
  // Two honest workers are needed before training starts, so the attacks below happen while
  // the weights are at rest and any change to them would show.
  options: { ...DEFAULT_RUN_OPTIONS, minWorkers: 2, evalExamples: 16, checkpointEvery: 0 },
  data,
  token: 'right-token',
  log: createLogger({ quiet: true }),
  metrics,
});
const server = new ChorusServer({ host: '127.0.0.1', port: 0, coordinator, metrics, log: createLogger({ quiet: true }), maxFrameBytes: 4 * 1024 * 1024 });
const { port } = await server.listen();
const url = `ws://127.0.0.1:${port}/ws`;
const initialHash = coordinator.paramsHash();
// Whatever test failed, the server goes (an open server would keep this file running).
after(async () => {
  coordinator.stop();
  await server.close();
}, { timeout: 30_000 });

interface Outcome {
  code: number;
  reason: string;
  errors: string[];
}

/** Connects a raw client, sends frames, and reports how the coordinator answered and closed. */
async function attack(frames: (Uint8Array | string)[], hello = true): Promise<Outcome> {
  const socket = new WebSocket(url);
  const errors: string[] = [];
  socket.on('message', (data: Buffer) => {
    const m = parseMessage(new Uint8Array(data));
    if (m.type === 'error') errors.push(`${m.code}: ${m.message}`);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  if (hello) {
    socket.send(encodeMessage({ type: 'hello', v: PROTOCOL_VERSION, token: 'right-token', runtime }));
    await waitFor('welcome', () => coordinator.membership.all().some((w) => w.state === 'ready'), 10_000);
  }
  for (const f of frames) socket.send(f, { binary: typeof f !== 'string' });
  const result = await Promise.race([closed, new Promise<{ code: number; reason: string }>((r) => setTimeout(() => r({ code: -1, reason: 'still open' }), 10_000))]);
  socket.terminate();
  await waitFor('the attacker to be gone', () => coordinator.membership.ready().length === 0, 10_000);
  return { ...result, errors };
}

const gradient = (values: Float32Array, moments = new Float32Array(coordinator.layout.bnStatCount)): Message => ({
  type: 'gradient', v: PROTOCOL_VERSION, step: 0, shardId: 1, count: 8, lossSum: 1, correct: 1, computeMs: 1,
  gradient: values, bnMoments: moments,
});

test('a wrong token is refused with a clear reason', async () => {
  const r = await attack([encodeMessage({ type: 'hello', v: PROTOCOL_VERSION, token: 'wrong', runtime })], false);
  assert.equal(r.code, CLOSE_CODES.badToken);
  assert.match(r.reason, /wrong join token/);
  assert.deepEqual(r.errors, ['bad-token: wrong join token']);
});

test('a malformed frame is refused', async () => {
  const r = await attack([new Uint8Array([1, 2, 3, 4, 5, 6, 7])]);
  assert.equal(r.code, CLOSE_CODES.malformed);
  assert.match(r.errors[0], /^malformed: /);
});

test('a text frame is refused', async () => {
  const r = await attack(['{"type":"gradient"}']);
  assert.equal(r.code, CLOSE_CODES.malformed);
});

test('an unknown message type is refused', async () => {
  const frame = encodeMessage({ type: 'bye', v: PROTOCOL_VERSION, reason: 'x' });
  // Re-encode with a type the protocol does not know.
  const evil = encodeMessage({ type: 'hello', v: PROTOCOL_VERSION, token: 't', runtime } as Message);
  void frame;
  const patched = Buffer.from(evil).toString('latin1').replace('hello', 'xyzzy');
  const r = await attack([Buffer.from(patched, 'latin1')]);
  assert.equal(r.code, CLOSE_CODES.malformed);
  assert.match(r.errors[0], /^unknown-type: .*xyzzy/);
});

test('a wrong protocol version is refused', async () => {
  const r = await attack([encodeMessage({ type: 'hello', v: PROTOCOL_VERSION + 1, token: 'right-token', runtime })], false);
  assert.equal(r.code, CLOSE_CODES.badVersion);
  assert.match(r.errors[0], /^bad-version: /);
});

test('a gradient of the wrong length is refused', async () => {
  const r = await attack([encodeMessage(gradient(new Float32Array(coordinator.layout.paramCount - 1)))]);
  assert.equal(r.code, CLOSE_CODES.badGradient);
  assert.match(r.errors[0], new RegExp(`^bad-gradient: .*${coordinator.layout.paramCount}`));
});

test('a NaN gradient is refused', async () => {
  const values = new Float32Array(coordinator.layout.paramCount);
  values[17] = NaN;
  const r = await attack([encodeMessage(gradient(values))]);
  assert.equal(r.code, CLOSE_CODES.badGradient);
  assert.match(r.errors[0], /^bad-gradient: /);
});

test('an oversized frame is refused', async () => {
  const r = await attack([new Uint8Array(5 * 1024 * 1024)]);
  assert.equal(r.code, CLOSE_CODES.tooLarge);
});

test('after all that the weights are untouched and the run goes on', async () => {
  assert.equal(coordinator.paramsHash(), initialHash);
  const refused = await metrics.metrics();
  assert.match(refused, /chorus_messages_refused_total\{reason="bad-token"\} 1/);
  const workers = [0, 1].map(() => new ChorusWorker({ url, token: 'right-token', connect: connectWs, runtime }));
  const running = workers.map((w) => w.start());
  try {
    await bounded(coordinator.run(), 60_000, 'the run to end');
    assert.equal(coordinator.step, config.steps);
    assert.notEqual(coordinator.paramsHash(), initialHash);
  } finally {
    for (const w of workers) w.stop();
    await Promise.allSettled(running);
  }
});
