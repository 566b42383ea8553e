import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { concatSplits, type Cifar10Split } from '@chorus/data';
import { PRESETS } from '@chorus/model';
import { CLOSE_CODES, FEATURE_LIMITS, PROTOCOL_VERSION, STRING_LIMITS, encodeMessage, parseMessage, type Message } from '@chorus/protocol';
import { AuthThrottle, DEFAULT_ADMISSION_LIMITS, MAX_AUTH_HOLD_MS, type AdmissionLimits } from '../src/http/admission.js';
import { ChorusServer, Coordinator, DEFAULT_RUN_OPTIONS, createLogger, createMetrics } from '../src/index.js';

const TOKEN = 'sesame';
const split: Cifar10Split = { count: 64, labels: new Uint8Array(64), pixels: new Uint8Array(64 * 3072) };
const data = { train: concatSplits([split]), test: split };

/** An in-process coordinator (tiny model, no training loop) behind a real server on 127.0.0.1. */
async function withServer(limits: Partial<AdmissionLimits>, body: (ctx: { port: number; metrics: ReturnType<typeof createMetrics>; coordinator: Coordinator }) => Promise<void>): Promise<void> {
  const metrics = createMetrics();
  const log = createLogger({ quiet: true, write: () => undefined });
  const coordinator = new Coordinator({
    config: {
      preset: 'tiny', spec: PRESETS.tiny, batch: 16, steps: 2, lr: 0.1, optimizer: 'sgd', weightDecay: 0,
      warmupSteps: 0, schedule: 'constant', bnGroup: 8, seed: 1, augment: false,
    },
    options: { ...DEFAULT_RUN_OPTIONS, checkpointEvery: 0 },
    data,
    token: TOKEN,
    log,
    metrics,
  });
  const server = new ChorusServer({ host: '127.0.0.1', port: 0, coordinator, metrics, log, limits });
  const { port } = await server.listen();
  try {
    await body({ port, metrics, coordinator });
  } finally {
    await server.close();
  }
}

const hello = (token: string): Message =>
  ({
    type: 'hello',
    v: PROTOCOL_VERSION,
    token,
    runtime: { kind: 'node', backend: 'test', device: 'test', cores: 1, microBatch: 8, agent: 'admission.test' },
  }) as Message;

interface Outcome {
  code: number;
  reason: string;
  status?: number;
}

/** Opens a worker socket, runs `send` once it is open, and resolves with how it ended. */
function session(port: number, send: (socket: WebSocket) => void = () => undefined): { socket: WebSocket; ended: Promise<Outcome> } {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  const ended = new Promise<Outcome>((resolve) => {
    socket.on('unexpected-response', (_req, res) => {
      resolve({ code: -1, reason: '', status: res.statusCode });
      socket.terminate();
    });
    socket.on('open', () => send(socket));
    socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    socket.on('error', () => undefined);
  });
  return { socket, ended };
}

const opened = (socket: WebSocket) => new Promise<void>((resolve, reject) => {
  socket.once('open', () => resolve());
  socket.once('error', reject);
});

async function metricValue(metrics: ReturnType<typeof createMetrics>, line: string): Promise<number> {
  const text = await metrics.metrics();
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found ? Number(found.split(' ').at(-1)) : 0;
}

async function until(probe: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('AuthThrottle: holds an address after N wrong tokens, doubling each time up to 5 minutes', () => {
  let now = 0;
  const throttle = new AuthThrottle({ authFailures: 3, authHoldMs: 1000 }, () => now);
  assert.equal(throttle.failure('a'), 0);
  assert.equal(throttle.failure('a'), 0);
  assert.equal(throttle.heldFor('a'), 0);
  assert.equal(throttle.failure('a'), 1000);
  assert.equal(throttle.heldFor('a'), 1000);
  assert.equal(throttle.heldFor('b'), 0, 'other addresses are not held');
  now = 1000;
  assert.equal(throttle.heldFor('a'), 0, 'the hold ends');
  for (let i = 0; i < 2; i++) throttle.failure('a');
  assert.equal(throttle.failure('a'), 2000, 'the second hold is twice as long');
  for (let hold = 0; hold < 20; hold++) for (let i = 0; i < 3; i++) throttle.failure('a');
  assert.equal(throttle.heldFor('a'), MAX_AUTH_HOLD_MS);
  throttle.success('a');
  assert.equal(throttle.heldFor('a'), 0, 'a correct token clears the record');
});

test('AuthThrottle: 0 failures allowed turns it off; memory stays bounded', () => {
  const off = new AuthThrottle({ authFailures: 0, authHoldMs: 1000 });
  for (let i = 0; i < 100; i++) assert.equal(off.failure('a'), 0);
  assert.equal(off.size, 0);
  const bounded = new AuthThrottle({ authFailures: 5, authHoldMs: 1000 }, Date.now, 100);
  for (let i = 0; i < 1000; i++) bounded.failure(`10.0.${i >> 8}.${i & 255}`);
  assert.equal(bounded.size, 100);
});

test('the token comparison accepts only the exact token', async () => {
  await withServer({}, async ({ coordinator }) => {
    assert.equal(coordinator.fleet.checkToken(TOKEN), true);
    for (const wrong of ['', 'sesamE', 'sesame ', 'sesam', 'x'.repeat(10_000), '€'.repeat(64)]) assert.equal(coordinator.fleet.checkToken(wrong), false, wrong);
  });
});

test('a frame whose type is 64 euro signs is refused with a close reason that fits; the server stays up', async () => {
  await withServer({}, async ({ port }) => {
    const type = '€'.repeat(64);
    const { ended } = session(port, (s) => s.send(encodeMessage({ type, v: PROTOCOL_VERSION } as unknown as Message)));
    const outcome = await ended;
    assert.equal(outcome.code, CLOSE_CODES.malformed);
    assert.ok(Buffer.byteLength(outcome.reason) <= 123);
    assert.match(outcome.reason, /unknown message type/);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
  });
});

test('a connection that sends no hello is closed after --hello-timeout, and counted', async () => {
  await withServer({ helloTimeoutMs: 150 }, async ({ port, metrics }) => {
    const { socket, ended } = session(port);
    await opened(socket);
    assert.equal(await metricValue(metrics, 'chorus_connections{state="unauthenticated"}'), 1);
    const outcome = await ended;
    assert.equal(outcome.code, CLOSE_CODES.timeout);
    assert.equal(await metricValue(metrics, 'chorus_connections_refused_total{reason="hello-timeout"}'), 1);
    // The server counts the socket as gone when its closing handshake ends, just after ours.
    await until(async () => (await metricValue(metrics, 'chorus_connections{state="unauthenticated"}')) === 0);
  });
});

test('before hello a frame above --max-pre-auth-frame is refused unread (1009); after hello the protocol limit applies', async () => {
  await withServer({ preAuthMaxFrameBytes: 1024 }, async ({ port, metrics }) => {
    const big = session(port, (s) => s.send(new Uint8Array(2048)));
    assert.equal((await big.ended).code, 1009);
    assert.equal(await metricValue(metrics, 'chorus_connections_refused_total{reason="pre-auth-too-large"}'), 1);

    // After a valid hello the same 2 KiB gets through the size gate (and is refused as garbage).
    const admitted = session(port, (s) => {
      s.once('message', () => s.send(new Uint8Array(2048)));
      s.send(encodeMessage(hello(TOKEN)));
    });
    assert.equal((await admitted.ended).code, CLOSE_CODES.malformed);
  });
});

test('--max-unauthenticated and --max-connections refuse further handshakes with 503', async () => {
  await withServer({ maxUnauthenticated: 2, maxConnections: 3, helloTimeoutMs: 60_000 }, async ({ port, metrics }) => {
    const pending = [session(port), session(port)];
    await Promise.all(pending.map((p) => opened(p.socket)));
    const third = session(port);
    assert.equal((await third.ended).status, 503);
    assert.equal(await metricValue(metrics, 'chorus_connections_refused_total{reason="too-many-unauthenticated"}'), 1);

    const watcher = new WebSocket(`ws://127.0.0.1:${port}/monitor`);
    await opened(watcher);
    const fourth = new Promise<number | undefined>((resolve) => {
      const s = new WebSocket(`ws://127.0.0.1:${port}/monitor`);
      s.on('unexpected-response', (_req, res) => resolve(res.statusCode));
      s.on('open', () => resolve(undefined));
      s.on('error', () => undefined);
    });
    assert.equal(await fourth, 503, 'three connections open: a fourth of any kind is refused');
    assert.equal(await metricValue(metrics, 'chorus_connections_refused_total{reason="too-many-connections"}'), 1);
    watcher.terminate();
    for (const p of pending) p.socket.terminate();
  });
});

test('repeated wrong tokens put the address on hold: handshakes and control requests get 429', async () => {
  await withServer({ authFailures: 2, authHoldMs: 60_000 }, async ({ port, metrics }) => {
    for (let i = 0; i < 2; i++) {
      const wrong = session(port, (s) => s.send(encodeMessage(hello('guess'))));
      assert.equal((await wrong.ended).code, CLOSE_CODES.badToken);
    }
    const held = session(port, (s) => s.send(encodeMessage(hello(TOKEN))));
    assert.equal((await held.ended).status, 429, 'even the right token waits out the hold');
    const control = await fetch(`http://127.0.0.1:${port}/api/control`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ action: 'pause' }),
    });
    assert.equal(control.status, 429);
    assert.ok(Number(control.headers.get('retry-after')) > 0);
    assert.equal(await metricValue(metrics, 'chorus_messages_refused_total{reason="bad-token"}'), 2);
    assert.ok((await metricValue(metrics, 'chorus_connections_refused_total{reason="auth-hold"}')) >= 2);
  });
});

test('an admitted worker that sends a gradient for a shard never assigned is refused (4004)', async () => {
  await withServer({}, async ({ port, coordinator }) => {
    const { paramCount, bnStatCount } = coordinator.layout;
    const forged = {
      type: 'gradient', v: PROTOCOL_VERSION, step: 0, shardId: 999_999, count: 8, lossSum: 1, correct: 1, computeMs: 1,
      gradient: new Float32Array(paramCount), bnMoments: new Float32Array(bnStatCount),
    } as unknown as Message;
    const { ended } = session(port, (s) => {
      s.once('message', () => s.send(encodeMessage(forged)));
      s.send(encodeMessage(hello(TOKEN)));
    });
    const outcome = await ended;
    assert.equal(outcome.code, CLOSE_CODES.badGradient);
    assert.match(outcome.reason, /never assigned/);
  });
});

test('the largest hello the protocol accepts fits under the default pre-hello frame limit', () => {
  // Every text field at its limit in 3-byte UTF-8 characters (the most bytes per UTF-16 unit).
  const wide = (n: number) => '€'.repeat(n);
  const largest = {
    type: 'hello', v: PROTOCOL_VERSION, token: wide(STRING_LIMITS.token), workerId: wide(STRING_LIMITS.workerId),
    runtime: {
      kind: 'browser', backend: wide(STRING_LIMITS.runtime), device: wide(STRING_LIMITS.runtime), cores: 4096, microBatch: 65536, agent: wide(STRING_LIMITS.runtime),
      backends: Array.from({ length: 8 }, () => ({ name: wide(32), imagesPerSecond: 1e7, skipped: wide(300) })),
    },
    features: Array.from({ length: FEATURE_LIMITS.maxEntries }, (_, i) => `${i}`.padEnd(FEATURE_LIMITS.name, 'x')),
  } as unknown as Message;
  const frame = encodeMessage(largest);
  assert.equal(parseMessage(frame).type, 'hello', 'it is a valid hello');
  assert.ok(frame.length <= DEFAULT_ADMISSION_LIMITS.preAuthMaxFrameBytes, `${frame.length} bytes`);
});
