import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import WebSocket from 'ws';
import { launchBrowser, shownStep, skipDashboardTests, type Browser } from './dashboard-support.js';
import { repoRoot, startCoordinator, startWorker, waitFor, type CoordinatorProc, type Proc } from './support.js';

/**
 * The dashboard in a real run: a coordinator (CLI) training the tiny preset with two Node
 * workers, watched from headless Chromium. The tests share the run and go in order.
 */

const SCREENSHOT = join(repoRoot, 'test-results', 'dashboard.png');

let dir: string;
let coordinator: CoordinatorProc;
let workers: Proc[] = [];
let ids: string[] = [];
let browser: Browser;
let page: Page;
let base: string;

const skip = skipDashboardTests;

// Two workers and Chromium to start: bounded, like every test here.
before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'chorus-dashboard-'));
  coordinator = await startCoordinator([
    '--preset', 'tiny', '--batch', '64', '--bn-group', '8', '--steps', '100000', '--min-workers', '2',
    '--eval-every', '10', '--eval-examples', '64', '--checkpoint-dir', join(dir, 'checkpoints'), '--checkpoint-every', '100000',
  ]);
  base = `http://127.0.0.1:${coordinator.port}`;
  workers = [startWorker(coordinator.url, coordinator.token), startWorker(coordinator.url, coordinator.token)];
  ids = await Promise.all(workers.map((w) => waitFor('a worker id', () => /joined as (w\d+)/.exec(w.output)?.[1], 90_000)));
  browser = await launchBrowser();
  page = await browser.open(`${base}/?token=${encodeURIComponent(coordinator.token)}`);
}, { timeout: 240_000 });

after(async () => {
  if (skip) return;
  await browser?.close();
  await Promise.all(workers.map((w) => w.kill()));
  await coordinator?.proc.kill();
  if (dir) await rm(dir, { recursive: true, force: true });
}, { timeout: 60_000 });

/** The status ticks of the coordinator's /monitor feed, as they arrive. */
function watchStatus(): { seen: { step: number; paused: boolean }[]; close(): void } {
  const seen: { step: number; paused: boolean }[] = [];
  const socket = new WebSocket(`ws://127.0.0.1:${coordinator.port}/monitor`);
  socket.on('message', (data: Buffer) => {
    const m = JSON.parse(data.toString()) as { type: string; status?: { step: number; paused: boolean } };
    if ((m.type === 'status' || m.type === 'snapshot') && m.status) seen.push({ step: m.status.step, paused: m.status.paused });
  });
  socket.on('error', () => undefined);
  return { seen, close: () => socket.terminate() };
}

/** Waits for a condition on the page, with what it was waiting for in the failure. */
async function until(p: Page, what: string, fn: (arg: string) => boolean, timeoutMs = 60_000, arg = ''): Promise<void> {
  try {
    await p.waitForFunction(fn, arg, { timeout: timeoutMs, polling: 100 });
  } catch (error) {
    throw new Error(`timed out waiting for ${what}: ${(error as Error).message}\ncoordinator output:\n${coordinator.proc.output.slice(-3000)}`);
  }
}

test('the page shows the run: summary, both workers with their backend, a live step counter, charts', { skip, timeout: 240_000 }, async () => {
  await until(page, 'the feed to be live', () => document.getElementById('connection')?.dataset.state === 'live');
  await until(page, 'two workers in the table', () => document.querySelectorAll('#workers tbody tr[data-state="training"]').length === 2);
  const rows = await page.$$eval('#workers tbody tr', (trs) =>
    trs.map((tr) => ({ id: (tr as HTMLElement).dataset.workerId, cells: Array.from(tr.querySelectorAll("td")).map((td) => td.textContent?.trim()) })),
  );
  assert.deepEqual(rows.map((r) => r.id).sort(), [...ids].sort());
  for (const r of rows) {
    assert.equal(r.cells[1], 'node', `kind of ${r.id}`);
    assert.equal(r.cells[2], 'wasm', `backend of ${r.id}`);
    assert.match(r.cells[3] ?? '', /\S/, `device of ${r.id}`);
  }
  assert.equal(await page.textContent('#preset'), 'tiny');
  assert.equal(await page.textContent('#batch'), '64');

  // The counter moves with the run, live.
  await until(page, 'step 3', () => Number(document.getElementById('step')?.dataset.step) >= 3, 90_000);
  const first = await shownStep(page);
  await waitFor('the counter to advance', async () => (await shownStep(page)) >= first + 2, 60_000);
  // Enough steps for charts worth a look in the screenshot.
  await waitFor('step 40', async () => (await shownStep(page)) >= 40, 120_000);
  const status = await coordinator.status();
  assert.ok(Math.abs(status.step - (await shownStep(page))) <= 3, 'the page keeps up with /api/status');

  // Charts have points, the latest step's breakdown is shown, the summary is filled in.
  await until(page, 'points on the loss chart', () => Number(document.getElementById('loss-chart')?.dataset.points) >= 3);
  assert.ok(Number(await page.getAttribute('#throughput-chart', 'data-points')) >= 3);
  assert.ok(Number(await page.getAttribute('#breakdown-chart', 'data-points')) >= 3);
  assert.equal(await page.locator('#loss-chart canvas').count(), 1, 'uPlot drew the loss chart');
  const legend = await page.$$eval('#breakdown-legend li', (lis) => lis.map((li) => li.textContent ?? ''));
  assert.deepEqual(legend.map((t) => t.replace(/ [\d.]+ m?s$/, '')), ['compute', 'transfer', 'wait for stragglers', 'reduce', 'optimizer', 'broadcast']);
  assert.match((await page.textContent('#loss')) ?? '', /^\d/);
  assert.match((await page.textContent('#elapsed')) ?? '', /\d+ s|min/);
  assert.match((await page.textContent('#eta')) ?? '', /\d/);
  await until(page, 'a test accuracy', () => /%$/.test(document.getElementById('test-accuracy')?.textContent ?? ''), 90_000);

  // The join link carries the token, with its QR code.
  assert.equal(await page.getAttribute('#join-link', 'href'), `${base}/join?token=${encodeURIComponent(coordinator.token)}`);
  assert.equal(await page.isVisible('#join-qr'), true);
  const joinEvents = await page.$$eval('#events li[data-kind="join"]', (lis) => lis.map((li) => li.textContent ?? ''));
  for (const id of ids) assert.ok(joinEvents.some((t) => t.includes(`worker ${id} joined`)), `the join of ${id} is logged`);
});

test('without the token the controls are disabled and refused; a wrong token is refused', { skip, timeout: 240_000 }, async () => {
  const bare = await browser.open(`${base}/`);
  try {
    await until(bare, 'the history on a fresh page', () => Number(document.getElementById('loss-chart')?.dataset.points) >= 3);
    for (const id of ['#pause', '#resume', '#checkpoint']) assert.equal(await bare.isDisabled(id), true, `${id} without a token`);
    assert.match((await bare.textContent('#token-note')) ?? '', /need the run’s token/);
    assert.equal(await bare.isVisible('#token-form'), true);
    assert.equal(await bare.isVisible('#join-link'), false, 'no join link without the token');
    // The coordinator refuses a request without the token whatever the page does.
    const direct = await bare.evaluate(async () => {
      const r = await fetch('/api/control', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"action":"pause"}' });
      return { status: r.status, body: (await r.json()) as { error?: string } };
    });
    assert.equal(direct.status, 401);
    assert.ok(direct.body.error);

    // A wrong token typed in: the controls say they were refused, and nothing is paused.
    await bare.fill('#token-input', 'not-the-token');
    await bare.click('#token-form button[type="submit"]');
    await until(bare, 'the controls to be enabled', () => !(document.getElementById('pause') as HTMLButtonElement).disabled, 10_000);
    await bare.click('#pause');
    await until(bare, 'the refusal', () => document.getElementById('control-result')?.dataset.kind === 'refused', 10_000);
    assert.match((await bare.textContent('#control-result')) ?? '', /^Refused: .*401/);
    assert.equal(await bare.isVisible('#token-form'), true, 'the token can be entered again');
    assert.equal((await coordinator.status()).paused, false);
    await until(bare, 'the refusal in the events log', () => !!document.querySelector('#events li[data-kind="refused"]'), 10_000);

    // A wrong token in the URL: refused too.
    const wrong = await browser.open(`${base}/?token=wrong`);
    await until(wrong, 'the controls to be enabled', () => !(document.getElementById('checkpoint') as HTMLButtonElement).disabled, 30_000);
    await wrong.click('#checkpoint');
    await until(wrong, 'the refusal', () => document.getElementById('control-result')?.dataset.kind === 'refused', 10_000);
    await wrong.close();

    // The right token typed in: the join link appears.
    await bare.fill('#token-input', coordinator.token);
    await bare.click('#token-form button[type="submit"]');
    await until(bare, 'the join link', () => !(document.getElementById('join-link') as HTMLAnchorElement).hidden, 10_000);
    assert.equal(await bare.getAttribute('#join-link', 'href'), `${base}/join?token=${encodeURIComponent(coordinator.token)}`);
    assert.equal(new URL(bare.url()).searchParams.get('token'), coordinator.token, 'a reload keeps the token');
  } finally {
    await bare.close();
  }
});

test('pause stops the step counter, resume restarts it, checkpoint now writes one', { skip, timeout: 240_000 }, async () => {
  await until(page, 'pause to be enabled', () => !(document.getElementById('pause') as HTMLButtonElement).disabled, 10_000);
  await page.click('#pause');
  await until(page, 'the pause to be accepted', () => document.getElementById('control-result')?.dataset.kind === 'ok', 10_000);
  await until(page, 'the paused state', () => document.getElementById('run-state')?.textContent === 'paused', 10_000);
  assert.equal((await coordinator.status()).paused, true);
  assert.equal(await page.isDisabled('#pause'), true);
  // The step in flight may still finish; after that the counter stands still: the coordinator's
  // own status ticks (one a second on /monitor) say the same step three times in a row.
  const pausedAt = (await coordinator.status()).step;
  const ticks = watchStatus();
  let held: number;
  try {
    ({ step: held } = await waitFor('three status ticks in a row at one step', () => {
      const last = ticks.seen.slice(-3);
      return last.length === 3 && last.every((s) => s.paused && s.step === last[0].step) && last[0];
    }, 30_000));
  } finally {
    ticks.close();
  }
  assert.ok(held <= pausedAt + 1, `paused at step ${pausedAt}, held at ${held}`);
  await waitFor(`the page to show step ${held}`, async () => (await shownStep(page)) === held, 10_000);
  assert.equal((await coordinator.status()).step, held);
  await until(page, 'the pause in the events log', () => !!document.querySelector('#events li[data-kind="pause"]'), 10_000);

  await page.click('#checkpoint');
  await until(page, 'the checkpoint in the events log', () => !!document.querySelector('#events li[data-kind="checkpoint"]'), 30_000);
  assert.match((await page.textContent('#control-result')) ?? '', /^Checkpoint written: .*checkpoint/);

  assert.equal((await coordinator.status()).step, held, 'no step while paused');
  await page.click('#resume');
  await until(page, 'the training state', () => document.getElementById('run-state')?.textContent === 'training', 10_000);
  await waitFor('the counter to move again', async () => (await shownStep(page)) >= held + 2, 60_000);
  const events = await page.$$eval('#events li', (lis) => lis.map((li) => (li as HTMLElement).dataset.kind));
  assert.equal(events.indexOf('resume') < events.indexOf('pause'), true, 'newest first: the resume above the pause');
});

test('a worker killed with SIGKILL shows as left and the events log says so', { skip, timeout: 240_000 }, async () => {
  const [gone] = ids;
  workers[0].child.kill('SIGKILL');
  await until(
    page,
    `${gone} to show as left`,
    (id: string) => Array.from(document.querySelectorAll<HTMLElement>("#workers tbody tr")).some((tr) => tr.dataset.workerId === id && tr.dataset.state === 'left'),
    60_000,
    gone,
  );
  const left = await page.$$eval('#workers tbody tr[data-state="left"]', (trs) => trs.map((tr) => (tr as HTMLElement).dataset.workerId));
  assert.deepEqual(left, [gone]);
  assert.equal(await page.textContent(`#workers tbody tr[data-worker-id="${gone}"] .state`), 'left');
  await until(page, 'the leave in the events log', () => document.querySelectorAll('#events li[data-kind="leave"]').length > 0, 30_000);
  const leaves = await page.$$eval('#events li[data-kind="leave"]', (lis) => lis.map((li) => li.textContent ?? ''));
  assert.ok(leaves.some((t) => t.includes(`worker ${gone} `)), leaves.join('\n'));
  // Training goes on with the other worker.
  const now = await shownStep(page);
  await waitFor('a step with one worker', async () => (await shownStep(page)) >= now + 2, 60_000);
  await until(page, 'the worker count', () => /^1 \(1 left\)$/.test(document.getElementById('worker-count')?.textContent ?? ''), 10_000);

  await mkdir(join(repoRoot, 'test-results'), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  const problems = browser.problems.filter((p) => !/status of 401/.test(p));
  assert.deepEqual(problems, [], 'no console errors or page errors');
});

test('when the coordinator goes away the page says so, and reconnects to the next one on the same address', { skip, timeout: 240_000 }, async () => {
  const before = await shownStep(page);
  await coordinator.proc.kill('SIGTERM');
  await until(page, 'the lost connection to show', () => document.getElementById('connection')?.dataset.state === 'retrying', 15_000);
  assert.equal(await page.isDisabled('#pause'), true, 'no controls while disconnected');
  // The same address and token: the remaining worker and the page come back on their own.
  coordinator = await startCoordinator(['--port', String(coordinator.port), '--token', coordinator.token, '--preset', 'tiny', '--batch', '64', '--bn-group', '8', '--steps', '100000', '--min-workers', '2']);
  await until(page, 'the feed to be live again', () => document.getElementById('connection')?.dataset.state === 'live', 30_000);
  // The new run waits for two workers at step 0.
  await until(page, 'the new run', () => document.getElementById('step')?.dataset.step === '0', 10_000);
  assert.ok(before > 0, 'the old run had moved on');
  const problems = browser.problems.filter((p) => !/status of 401|ERR_CONNECTION_REFUSED|WebSocket connection to .* failed/.test(p));
  assert.deepEqual(problems, [], 'no console errors or page errors');
});
