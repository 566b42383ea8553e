/**
 * Property-based fuzzing of the coordinator's WebSocket endpoint: thousands of generated frames,
 * each on its own connection to the real server on 127.0.0.1, while an honest worker process
 * trains in the same run. Every frame must be refused with an error close code, the server must
 * stay up, and at the end the weights must be exactly those of the same run without the fuzz.
 *
 * CHORUS_FUZZ_SCALE multiplies the number of runs per property (default 1: about 3,000 frames).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import WebSocket from 'ws';
import * as tf from '@tensorflow/tfjs';
import { selectNodeBackend } from '@chorus/backend/node';
import { ChorusServer, Coordinator, DEFAULT_RUN_OPTIONS, createLogger, createMetrics, type RunConfig } from '@chorus/coordinator';
import { loadCifar10 } from '@chorus/data/node';
import { trainLocally } from '@chorus/local-trainer';
import { PRESETS } from '@chorus/model';
import { CLOSE_CODES, PROTOCOL_VERSION, WORKER_FEATURES, decodeFrame, encodeMessage, getGradientCodec, sideOfStep, type Message } from '@chorus/protocol';
import { cifarDir, startWorker, waitFor } from './support.js';

const SCALE = Math.max(0.1, Number(process.env.CHORUS_FUZZ_SCALE ?? 1));
const runs = (n: number) => Math.max(1, Math.round(n * SCALE));
const TOKEN = 'fuzz-token-that-no-generator-produces';

/** Close codes that say "your frame was refused": ws' own protocol errors, size, and Chorus' refusals. */
const ERROR_CLOSE_CODES = new Set<number>([
  1002, // WebSocket protocol error (bad framing, reserved bits, unmasked client frame)
  1007, // invalid UTF-8 in a text frame
  CLOSE_CODES.tooLarge,
  CLOSE_CODES.badToken,
  CLOSE_CODES.badVersion,
  CLOSE_CODES.malformed,
  CLOSE_CODES.badGradient,
  CLOSE_CODES.timeout, // a frame that never completes: closed when hello is overdue
]);

tf.env().set('PROD', true);
await selectNodeBackend({ force: 'wasm' });
const data = await loadCifar10(cifarDir);

// A constant learning rate, so a run stopped after K steps equals a reference trained for K.
const config: RunConfig = {
  preset: 'tiny', spec: PRESETS.tiny, batch: 32, steps: 1_000_000, lr: 0.1, optimizer: 'sgd', weightDecay: 5e-4,
  warmupSteps: 0, schedule: 'constant', bnGroup: 8, seed: 5, augment: true,
};

// ------------------------------------------------------------------ frames

const packr = new Packr({ useRecords: false, structuredClone: false });

/** A Chorus frame around any header value and raw tail bytes, valid or not. */
function frameOf(header: unknown, tailBytes: Uint8Array = new Uint8Array(0), headerLength?: number): Uint8Array {
  const packed = packr.pack(header);
  const frame = new Uint8Array(((4 + packed.length + 3) & ~3) + tailBytes.length);
  new DataView(frame.buffer).setUint32(0, headerLength ?? packed.length, true);
  frame.set(packed, 4);
  frame.set(tailBytes, (4 + packed.length + 3) & ~3);
  return frame;
}

const runtime = { kind: 'node', backend: 'wasm', device: 'fuzz', cores: 1, microBatch: 8, agent: 'fuzz' };
const helloWith = (token: string) => encodeMessage({ type: 'hello', v: PROTOCOL_VERSION, token, runtime, features: [...WORKER_FEATURES] } as Message);
const wrongHello = helloWith('not-the-token');

function gradientFrame(paramCount: number, bnStatCount: number, fields: Record<string, unknown> = {}): Uint8Array {
  return encodeMessage({
    type: 'gradient', v: PROTOCOL_VERSION, step: 0, shardId: 1, count: 8, lossSum: 1, correct: 1, computeMs: 1,
    gradient: new Float32Array(paramCount), bnMoments: new Float32Array(bnStatCount), ...fields,
  } as unknown as Message);
}

const hostileString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.constantFrom('€'.repeat(64), '\u0000'.repeat(40), '\u0000hello', '\uD800', '\uDFFF\uD800', 'e\u0301'.repeat(100), '🙂'.repeat(80), 'hello', '__proto__', 'constructor'),
  fc.nat({ max: 3 }).map((i) => ['x', '€', '\u0000', '🙂'][i].repeat(1 << 20)), // megabyte strings
);
const hostileNumber = fc.oneof(
  fc.double(),
  fc.constantFrom(NaN, Infinity, -Infinity, -0, 2 ** 53, 2 ** 64, -(2 ** 63), Number.MAX_VALUE, Number.MIN_VALUE, 1e308, 0.5, -1),
  fc.integer(),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
);
const hostileValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    hostileString,
    hostileNumber,
    fc.constantFrom(null, true, false, undefined),
    fc.uint8Array({ maxLength: 64 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(hostileString.filter((s) => s.length < 1000), tie('value'), { maxKeys: 4 }),
  ),
})).value;

/** A hello or gradient header with one field (or nested runtime field) replaced by something hostile. */
const hostileHeader = fc
  .record({
    base: fc.constantFrom('hello', 'gradient', 'heartbeat', 'bye', 'evalResult'),
    field: fc.constantFrom('type', 'v', 'token', 'runtime', 'runtime.kind', 'runtime.cores', 'runtime.microBatch', 'runtime.agent', 'features', 'step', 'shardId', 'count', 'lossSum', 'time', 'reason', 'extra'),
    value: hostileValue,
    tails: fc.oneof(
      fc.constant([] as unknown[]),
      fc.array(fc.tuple(hostileString.filter((s) => s.length < 100), fc.constantFrom('f32', 'i32', 'u8', 'u16', 'i8', 'f64', 'x', 7), hostileNumber), { maxLength: 3 }),
    ),
  })
  .map(({ base, field, value, tails }) => {
    const fields: Record<string, unknown> = { type: base, v: PROTOCOL_VERSION, token: 'not-the-token', runtime: { ...runtime }, step: 0, shardId: 1, count: 8, lossSum: 1, correct: 1, computeMs: 1, time: 1, reason: 'x', evalId: 1 };
    if (field.startsWith('runtime.')) (fields.runtime as Record<string, unknown>)[field.slice(8)] = value;
    else fields[field] = value;
    return frameOf({ fields, tails }, new Uint8Array(64));
  });

/** msgpack headers that claim far more than they hold, and header lengths that lie. */
const lengthBomb = fc.oneof(
  fc.constantFrom(
    [0xdd, 0xff, 0xff, 0xff, 0xff], // array32 of 4 billion
    [0xdf, 0xff, 0xff, 0xff, 0xff], // map32 of 4 billion
    [0xdb, 0xff, 0xff, 0xff, 0xff], // str32 of 4 GiB
    [0xc6, 0xff, 0xff, 0xff, 0xff], // bin32 of 4 GiB
    [0xc9, 0xff, 0xff, 0xff, 0xff, 0x01], // ext32 of 4 GiB
    [0x81, 0xa6, 0x66, 0x69, 0x65, 0x6c, 0x64, 0x73, 0xdd, 0x7f, 0xff, 0xff, 0xff], // {fields: array32 of 2^31}
    [0x82, 0xa6, 0x66, 0x69, 0x65, 0x6c, 0x64, 0x73, 0x80, 0xa5, 0x74, 0x61, 0x69, 0x6c, 0x73, 0x91, 0x93, 0xa1, 0x67, 0xa3, 0x66, 0x33, 0x32, 0xce, 0xff, 0xff, 0xff, 0xff], // a tail of 4 billion floats
  ).map((bytes) => {
    const frame = new Uint8Array(4 + bytes.length + 64);
    new DataView(frame.buffer).setUint32(0, bytes.length, true);
    frame.set(bytes, 4);
    return frame;
  }),
  fc.record({ claimed: fc.constantFrom(0, 1, 0xffffffff, 0x7fffffff, 65536), depth: fc.integer({ min: 1, max: 5000 }) }).map(({ claimed, depth }) => {
    // Deep nesting: [[[[...]]]] (a recursion bomb), with a header length that may lie.
    const body = new Uint8Array(depth + 1).fill(0x91);
    body[depth] = 0xc0;
    const frame = new Uint8Array(4 + body.length);
    new DataView(frame.buffer).setUint32(0, claimed === 0 ? body.length : claimed, true);
    frame.set(body, 4);
    return frame;
  }),
);

// ------------------------------------------------------------------ connections

interface Ended {
  code: number;
  reason: string;
}

/** One connection: run `act` once open, resolve with the close code (or fail after 10 s). */
function attack(port: number, act: (ws: WebSocket) => void): Promise<Ended> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { maxPayload: 256 * 1024 * 1024 });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('the server neither refused nor closed the connection within 10 s'));
    }, 10_000);
    ws.on('open', () => {
      try {
        act(ws);
      } catch (error) {
        clearTimeout(timer);
        ws.terminate();
        reject(error as Error);
      }
    });
    ws.on('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      reject(new Error(`handshake refused with HTTP ${res.statusCode}`));
    });
    ws.on('error', () => undefined);
    ws.on('close', (code, reason) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString() });
    });
  });
}

/** Sends frames in one TCP write, so the server handles them in one turn of its event loop. */
function sendTogether(ws: WebSocket, frames: (Uint8Array | string)[]): void {
  const socket = (ws as unknown as { _socket: Socket })._socket;
  socket.cork();
  for (const frame of frames) ws.send(frame, { binary: typeof frame !== 'string' });
  process.nextTick(() => socket.uncork());
}

function assertRefused(ended: Ended, what: string): void {
  assert.ok(ERROR_CLOSE_CODES.has(ended.code), `${what}: closed with ${ended.code} (${ended.reason}), not an error code`);
  assert.ok(Buffer.byteLength(ended.reason) <= 123);
}

function flipBits(frame: Uint8Array, positions: number[]): Uint8Array {
  const copy = frame.slice();
  for (const p of positions) copy[Math.floor(p / 8) % copy.length] ^= 1 << p % 8;
  return copy;
}

// ------------------------------------------------------------------ the run

test('thousands of hostile frames: each refused, the coordinator stays up, the honest worker trains, the weights are untouched', { timeout: 600_000 }, async (t) => {
  const metrics = createMetrics();
  const log = createLogger({ quiet: true, write: () => undefined });
  const coordinator = new Coordinator({
    config,
    // No deadline in this test: a slow step (the fuzz shares the CPU) must not hand the honest
    // worker's shard to a fuzz client that happens to be admitted at that moment.
    options: { ...DEFAULT_RUN_OPTIONS, minWorkers: 1, evalEvery: 0, evalExamples: 0, checkpointEvery: 0, minDeadlineMs: 3_600_000, firstShardDeadlineMs: 3_600_000 },
    data,
    token: TOKEN,
    log,
    metrics,
  });
  // Wrong tokens are what most generated hellos carry: the hold is tested on its own, off here.
  // A short hello timeout closes frames that never complete (random bytes that declare more).
  const server = new ChorusServer({ host: '127.0.0.1', port: 0, coordinator, metrics, log, limits: { authFailures: 0, helloTimeoutMs: 250 } });
  const { port } = await server.listen();
  // Slowed down, so the run is not many steps ahead of the fuzz; micro-batch = BatchNorm group,
  // so its arithmetic is exactly the reference trainer's.
  const honest = startWorker(`ws://127.0.0.1:${port}/ws`, TOKEN, ['--micro-batch', '8', '--slowdown', '3', '--quiet']);
  const running = coordinator.run();
  let frames = 0;
  const started = Date.now();
  try {
    await waitFor('the honest worker to train a step', () => coordinator.step >= 1, 120_000);
    const { paramCount, bnStatCount } = coordinator.layout;
    const property = async <T>(name: string, arbitrary: fc.Arbitrary<T>, numRuns: number, act: (value: T) => (ws: WebSocket) => void) => {
      const stepBefore = coordinator.step;
      const t0 = Date.now();
      try {
        await fc.assert(
          fc.asyncProperty(arbitrary, async (value) => {
            frames += 1;
            assertRefused(await attack(port, act(value)), name);
          }),
          { numRuns, seed: Number(process.env.CHORUS_FUZZ_SEED ?? Date.now() % 2 ** 31) },
        );
      } catch (error) {
        // A counterexample can be megabytes long: keep the seed, the reason and its start.
        const text = String((error as Error).message);
        const cause = (error as { cause?: Error }).cause?.message ?? '';
        throw new Error(`${name}: ${text.slice(0, 1500)}${text.length > 1500 ? '...' : ''}\ncause: ${cause.slice(0, 500)}`);
      }
      t.diagnostic(`${name}: ${numRuns} frames in ${Date.now() - t0} ms, steps ${stepBefore} -> ${coordinator.step}`);
    };

    // Before hello.
    await property('random bytes', fc.uint8Array({ maxLength: 4096 }), runs(400), (bytes) => (ws) => ws.send(bytes));
    await property('oversized before hello', fc.integer({ min: 16 * 1024 + 1, max: 2 * 1024 * 1024 }), runs(20), (n) => (ws) => ws.send(new Uint8Array(n)));
    await property('truncated hello', fc.nat({ max: wrongHello.length - 1 }), runs(200), (cut) => (ws) => ws.send(wrongHello.subarray(0, cut)));
    await property('bit-flipped hello', fc.array(fc.nat({ max: wrongHello.length * 8 - 1 }), { minLength: 1, maxLength: 8 }), runs(400), (bits) => (ws) => ws.send(flipBits(wrongHello, bits)));
    await property('hostile header fields', hostileHeader, runs(600), (frame) => (ws) => ws.send(frame));
    await property('msgpack length bombs', lengthBomb, runs(150), (frame) => (ws) => ws.send(frame));
    await property('text frames', fc.string({ unit: 'binary', maxLength: 2000 }), runs(200), (text) => (ws) => ws.send(text));
    await property(
      'frames before hello',
      fc.constantFrom(
        gradientFrame(paramCount, bnStatCount),
        encodeMessage({ type: 'heartbeat', v: PROTOCOL_VERSION, time: 1 } as Message),
        encodeMessage({ type: 'bye', v: PROTOCOL_VERSION, reason: 'x' } as Message),
        encodeMessage({ type: 'evalResult', v: PROTOCOL_VERSION, evalId: 1, shardId: 1, count: 8, lossSum: 1, correct: 1 } as Message),
      ),
      runs(100),
      (frame) => (ws) => ws.send(frame),
    );
    await property('raw bytes under the WebSocket framing', fc.uint8Array({ minLength: 1, maxLength: 512 }), runs(120), (bytes) => (ws) => {
      // Unmasked or malformed WebSocket frames: ws must refuse them with 1002 or 1009.
      (ws as unknown as { _socket: Socket })._socket.write(bytes);
    });

    // After a valid hello. These clients are admitted for a moment, and a step that started in
    // that moment would give them a share; the share would come back to the honest worker when
    // they are refused, but computed as two shards instead of one, which changes the float32
    // summation order and so the last bits of the weights. Training is paused for this part,
    // so the comparison with the reference can stay bit for bit.
    const hello = helloWith(TOKEN);
    coordinator.setPaused(true);
    await property('hello twice', fc.constant(hello), runs(50), (frame) => (ws) => sendTogether(ws, [hello, frame]));
    await property(
      'gradients for shards never assigned',
      fc.record({ shardId: fc.integer({ min: 1_000_000, max: 2 ** 31 - 1 }), step: fc.nat(), count: fc.integer({ min: 1, max: 32 }) }),
      runs(100),
      (fields) => (ws) => sendTogether(ws, [hello, gradientFrame(paramCount, bnStatCount, fields)]),
    );
    await property(
      'garbage after hello',
      fc.oneof(fc.uint8Array({ maxLength: 4096 }), hostileHeader, lengthBomb, fc.array(fc.nat({ max: 8 * 1024 }), { minLength: 1, maxLength: 8 }).map((bits) => flipBits(gradientFrame(paramCount, bnStatCount), bits))),
      runs(300),
      (frame) => (ws) => sendTogether(ws, [hello, frame]),
    );

    coordinator.setPaused(false);
    const seconds = (Date.now() - started) / 1000;
    t.diagnostic(`${frames} frames in ${seconds.toFixed(1)} s (${Math.round(frames / seconds)} frames/s)`);
    assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200, 'the coordinator still serves');

    // The honest worker kept training through all of it.
    const stepAfterFuzz = coordinator.step;
    await waitFor('another step after the fuzz', () => coordinator.step > stepAfterFuzz, 60_000);
    coordinator.setPaused(true);
    await waitFor('the step in flight to finish', () => !coordinator.stepInFlight, 60_000);
    const held = coordinator.step;
    const params = coordinator.params.slice();
    const ready = coordinator.membership.ready();
    assert.equal(ready.length, 1, `only the honest worker is left: ${ready.map((w) => w.id)}`);
    const reissued = coordinator.history.events.filter((e) => e.kind === 'reissue' || e.kind === 'straggler');
    assert.deepEqual(reissued.map((e) => e.message), [], 'no fuzz client ever held a shard');
    assert.ok(coordinator.history.steps.every((s) => s.examples === config.batch && Number.isFinite(s.loss)), 'every step reduced exactly the batch');

    // Nothing reached the training state: the weights equal a run that saw no fuzz, bit for bit.
    const reference = await trainLocally({ ...config, steps: held, microBatch: 8, evalEvery: 0, evalExamples: 0 }, data);
    let differing = 0;
    for (let i = 0; i < params.length; i++) if (params[i] !== reference.params[i]) differing += 1;
    t.diagnostic(`after ${held} steps: ${differing} of ${params.length} weights differ from the undisturbed reference`);
    assert.equal(differing, 0);
  } finally {
    coordinator.stop();
    await honest.kill();
    await running.catch(() => undefined);
    await server.close();
  }
});

test('compressed runs: mutated fp16, int8 and low-rank gradients for a shard the client really holds are refused or counted, never crash', { timeout: 300_000 }, async (t) => {
  for (const [codecName, lowRank] of [['fp16'], ['int8'], ['int8', 2]] as (readonly ['fp16' | 'int8', number?])[]) {
    const label = `${codecName}${lowRank ? ` low-rank ${lowRank}` : ''}`;
    const codec = getGradientCodec(codecName);
    const metrics = createMetrics();
    const log = createLogger({ quiet: true, write: () => undefined });
    // One BatchNorm group a batch: each fuzz client, alone in the run, holds the whole step.
    const coordinator = new Coordinator({
      config: { ...config, batch: 8, codec: codecName, ...(lowRank ? { lowRank } : {}) },
      options: { ...DEFAULT_RUN_OPTIONS, minWorkers: 1, evalEvery: 0, evalExamples: 0, checkpointEvery: 0, minDeadlineMs: 3_600_000, firstShardDeadlineMs: 3_600_000 },
      data,
      token: TOKEN,
      log,
      metrics,
    });
    const server = new ChorusServer({ host: '127.0.0.1', port: 0, coordinator, metrics, log, limits: { authFailures: 0 } });
    const { port } = await server.listen();
    const running = coordinator.run();
    const { paramCount, bnStatCount } = coordinator.layout;
    let refused = 0;
    let counted = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.record({
            scale: fc.double({ min: -1e-2, max: 1e-2, noNaN: true }),
            flips: fc.array(fc.nat({ max: 64 * 1024 }), { minLength: 1, maxLength: 6 }),
          }),
          async ({ scale, flips }) => {
            const ended = await attack(port, (ws) => {
              let answered = false;
              ws.on('message', (raw: Buffer) => {
                const m = decodeFrame(new Uint8Array(raw)) as { type: string; shardId?: number; step?: number; indices?: Int32Array };
                if (m.type !== 'assign' || answered) return;
                answered = true;
                const count = m.indices!.length;
                // A low-rank run's gradient is its step's projection, shorter than the parameters.
                const length = coordinator.lowRank ? coordinator.lowRank.plan.payloadLength(sideOfStep(m.step!)) : paramCount;
                const sum = Float32Array.from({ length }, (_, i) => scale * Math.sin(i + 1) * count);
                const { values, scales } = codec.encode(sum);
                const frame = encodeMessage({
                  type: 'gradient', v: PROTOCOL_VERSION, step: m.step, shardId: m.shardId, count, lossSum: 2 * count, correct: 1, computeMs: 1,
                  gradient: values, ...(scales ? { scales } : {}), bnMoments: new Float32Array(bnStatCount).fill(0.5),
                } as unknown as Message);
                ws.send(flipBits(frame, flips));
                // Leave at once: the close frame follows the gradient on the same stream, so the
                // server has refused or counted the gradient before it reads the close.
                ws.close(1000);
              });
              ws.send(helloWith(TOKEN));
            });
            if (ended.code === 1000 || ended.code === 1005) counted += 1;
            else {
              refused += 1;
              assertRefused(ended, `${label} gradient`);
            }
          },
        ),
        { numRuns: runs(100), seed: Number(process.env.CHORUS_FUZZ_SEED ?? Date.now() % 2 ** 31) },
      );
      assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
      assert.ok(coordinator.params.every(Number.isFinite), 'no refused payload reached the weights');
      assert.ok(coordinator.workerParams.every(Number.isFinite));
      t.diagnostic(`${label}: ${refused} mutated gradients refused, ${counted} counted, ${coordinator.step} steps`);
      // Some mutations leave a valid gradient: none counted would mean no client got that far.
      assert.ok(counted > 0, `${label}: no mutated gradient was counted`);
    } finally {
      coordinator.stop();
      await running.catch(() => undefined);
      await server.close();
    }
  }
});
