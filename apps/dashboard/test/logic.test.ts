import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeRefusal, isLoopback, joinUrl, monitorUrl, sendControl, tokenFrom } from '../src/controls.js';
import { bytes, duration, integer, millis, number, percent, rate, share } from '../src/format.js';
import { alignSeries, applyMessage, backoffMs, emptyState, parseMessage, workerIds } from '../src/state.js';
import type { Status, StepRecord } from '../src/types.js';

const status = (over: Partial<Status> = {}): Status => ({
  preset: 'tiny', paramCount: 1234, batch: 64, steps: 100, step: 3, epoch: 0, paused: false, lr: 0.1, loss: 2.3,
  accuracy: 0.1, testAccuracy: null, paramsHash: 'abc', elapsedSeconds: 5, etaSeconds: null, workers: [], events: [], recentSteps: [],
  ...over,
});

const step = (n: number, perWorker: Record<string, number> = { 'w-1': 10 }): StepRecord => ({
  step: n, loss: 2 - n / 100, accuracy: n / 100, lr: 0.1, seconds: 0.5, imagesPerSecond: 128, workers: 2, examples: 64, shards: 2,
  time: 1_700_000_000_000 + n, perWorker,
  breakdown: { computeMs: 100, transferMs: 10, waitMs: 5, reduceMs: 1, optimizerMs: 2, broadcastMs: 3 },
});

test('formats read well and show a dash for what is not known', () => {
  assert.equal(integer(570602), '570,602');
  assert.equal(integer(null), '–');
  assert.equal(number(0.123456), '0.1235');
  assert.equal(number(2e-5, 3), '2.00e-5');
  assert.equal(number(Number.NaN), '–');
  assert.equal(percent(0.8312), '83.1%');
  assert.equal(bytes(512), '512 B');
  assert.equal(bytes(4.6 * 1024 * 1024), '4.60 MiB');
  assert.equal(duration(42), '42 s');
  assert.equal(duration(187), '3 min 07 s');
  assert.equal(duration(7500), '2 h 05 min');
  assert.equal(duration(null), '–');
  assert.equal(millis(0.42), '0.42 ms');
  assert.equal(millis(18.2), '18 ms');
  assert.equal(millis(1250), '1.25 s');
  assert.equal(rate(1234.5), '1,235/s');
  assert.equal(rate(56.71), '56.7/s');
  assert.equal(share(32, 128), '25% (32)');
  assert.equal(share(null, 128), '–');
});

test('the feed folds into the state: snapshot, steps (once each), evals, events, status', () => {
  const s = emptyState();
  const c0 = applyMessage(s, { type: 'snapshot', status: status(), steps: [step(1), step(2), step(3)], evals: [], events: [{ time: 1, kind: 'join', message: 'w-1 joined' }] });
  assert.deepEqual(c0, { status: true, steps: true, evals: true, events: true });
  assert.equal(s.steps.length, 3);
  const c1 = applyMessage(s, { type: 'step', step: step(4) });
  assert.equal(c1.steps, true);
  assert.equal(s.status?.step, 4, 'a step moves the counter at once');
  assert.equal(s.status?.loss, step(4).loss);
  assert.equal(applyMessage(s, { type: 'step', step: step(4) }).steps, false, 'a step already there is not added again');
  applyMessage(s, { type: 'eval', eval: { step: 4, accuracy: 0.3, loss: 1.9, count: 100 } });
  assert.equal(s.status?.testAccuracy, 0.3);
  applyMessage(s, { type: 'event', event: { time: 2, kind: 'leave', message: 'w-1 left' } });
  assert.equal(s.events.at(-1)?.kind, 'leave');
  applyMessage(s, { type: 'status', status: status({ step: 5, paused: true }) });
  assert.equal(s.status?.paused, true);
});

test('frames that are not monitor messages are ignored', () => {
  assert.equal(parseMessage('not json'), null);
  assert.equal(parseMessage('42'), null);
  assert.equal(parseMessage('{"type":"step"}'), null);
  assert.equal(parseMessage('{"type":"other","x":1}'), null);
  assert.equal(parseMessage(JSON.stringify({ type: 'step', step: step(1) }))?.type, 'step');
});

test('series are aligned on the union of their x values', () => {
  assert.deepEqual(
    alignSeries([
      { x: [1, 2, 3], y: [10, 20, Number.NaN] },
      { x: [0, 2], y: [5, 6] },
    ]),
    [[0, 1, 2, 3], [null, 10, 20, null], [5, null, 6, null]],
  );
  assert.deepEqual(workerIds([step(1, { a: 1 }), step(2, { a: 1, b: 2 })]), ['a', 'b']);
});

test('reconnect back-off grows, is capped and never zero', () => {
  assert.equal(backoffMs(0, () => 1), 500);
  assert.equal(backoffMs(3, () => 1), 4000);
  assert.equal(backoffMs(30, () => 1), 10_000);
  assert.equal(backoffMs(0, () => 0), 250);
});

test('token, join link and monitor URL', () => {
  assert.equal(tokenFrom('?token=abc%2Bdef'), 'abc+def');
  assert.equal(tokenFrom('?token='), null);
  assert.equal(tokenFrom(''), null);
  assert.equal(joinUrl('http://h:8080', 'a b+c'), 'http://h:8080/join?token=a%20b%2Bc');
  assert.equal(monitorUrl({ protocol: 'http:', host: 'h:8080' }), 'ws://h:8080/monitor');
  assert.equal(monitorUrl({ protocol: 'https:', host: 'h' }), 'wss://h/monitor');
  assert.ok(isLoopback('127.0.0.1') && isLoopback('localhost') && isLoopback('[::1]'));
  assert.ok(!isLoopback('192.168.1.5') && !isLoopback('chorus.example'));
});

test('control requests carry the token and report refusals', async () => {
  const calls: { url: string; init: RequestInit }[] = [];
  const answer = (status: number, body: unknown) => (async (url: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(url), init: init ?? {} });
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
  assert.deepEqual(await sendControl('pause', 'tok', answer(200, { ok: true, paused: true })), { ok: true });
  assert.equal(calls[0].url, '/api/control');
  assert.equal(calls[0].init.method, 'POST');
  assert.equal((calls[0].init.headers as Record<string, string>).authorization, 'Bearer tok');
  assert.deepEqual(JSON.parse(String(calls[0].init.body)), { action: 'pause' });
  assert.deepEqual(await sendControl('checkpoint', 'tok', answer(200, { ok: true, path: '/c/checkpoint-1.chorus' })), { ok: true, path: '/c/checkpoint-1.chorus' });
  assert.deepEqual(await sendControl('checkpoint', 'tok', answer(409, { error: 'no --checkpoint-dir was given' })), { ok: false, status: 409, message: 'no --checkpoint-dir was given' });
  const refused = await sendControl('resume', null, answer(401, { error: 'wrong or missing token' }));
  assert.deepEqual(refused, { ok: false, status: 401, message: 'wrong or missing token' });
  assert.equal((calls[3].init.headers as Record<string, string>).authorization, undefined);
  assert.match(describeRefusal('resume', refused as { status: number; message: string }), /^Refused: .*401: wrong or missing token/);
  const down = await sendControl('checkpoint', 't', (async () => {
    throw new TypeError('Failed to fetch');
  }) as typeof fetch);
  assert.deepEqual(down, { ok: false, status: 0, message: 'the coordinator could not be reached (Failed to fetch)' });
});
