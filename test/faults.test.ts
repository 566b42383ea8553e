import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { selectNodeBackend } from '@chorus/backend/node';
import { decodeCheckpoint } from '@chorus/coordinator';
import { loadCifar10 } from '@chorus/data/node';
import { trainLocally } from '@chorus/local-trainer';
import { PRESETS } from '@chorus/model';
import type { OptimizerName } from '@chorus/train';
import { EQUIVALENCE_TOLERANCE, cifarDir, relativeMaxDiff, startCoordinator, startWorker, waitFor, type CoordinatorProc, type Proc } from './support.js';

tf.env().set('PROD', true);
await selectNodeBackend({ force: 'wasm' });
const data = await loadCifar10(cifarDir);

const STEPS = 14;
const runArgs = (dir: string, steps = STEPS) => [
  '--preset', 'tiny', '--batch', '64', '--bn-group', '8', '--steps', String(steps), '--lr', '0.2', '--warmup', '1',
  '--seed', '5', '--eval-examples', '32', '--checkpoint-dir', dir, '--checkpoint-every', '2',
];

/**
 * The same run in one process, with the micro-batch a WASM worker uses (32). A run whose
 * steps are each computed by one such worker on the whole batch is then bit-identical to it.
 */
const reference = await trainLocally(
  {
    spec: PRESETS.tiny, steps: STEPS, batch: 64, lr: 0.2, optimizer: 'sgd', weightDecay: 5e-4, warmupSteps: 1,
    schedule: 'cosine', bnGroup: 8, microBatch: 32, seed: 5, augment: true, evalEvery: 0, evalExamples: 32,
  },
  data,
);

async function finalCheckpoint(dir: string, steps = STEPS) {
  const files = (await readdir(dir)).filter((f) => /^checkpoint-\d+\.chorus$/.test(f)).sort();
  const state = decodeCheckpoint(new Uint8Array(await readFile(join(dir, files.at(-1)!))));
  assert.equal(state.step, steps);
  return state;
}

test('elastic: a joiner trains from the next step; a worker killed mid-step loses its shard; nothing is lost or counted twice', { timeout: 180_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-elastic-'));
  const steps = 40;
  const c = await startCoordinator([...runArgs(dir, steps), '--min-workers', '2']);
  const procs = [startWorker(c.url, c.token, ['--slowdown', '4']), startWorker(c.url, c.token)];
  try {
    await waitFor('step 3', async () => (await c.status()).step >= 3);
    const joiner = startWorker(c.url, c.token);
    procs.push(joiner);
    const idOf = (p: typeof joiner) => waitFor('a worker id', () => /joined as (w\d+)/.exec(p.output)?.[1]);
    const joinerId = await idOf(joiner);
    const slowId = await idOf(procs[0]);
    await waitFor('the joiner to train', async () => ((await c.status()).workers.find((w) => w.id === joinerId)?.shardsDone ?? 0) > 0);
    // The first worker is four times slower, so it nearly always holds a shard: kill it now.
    const killedAt = (await c.status()).step;
    procs[0].child.kill('SIGKILL');
    assert.equal(await c.proc.exit(), 0, c.proc.output);
    assert.ok(killedAt < steps, 'the kill happened mid-run');
    const state = await finalCheckpoint(dir, steps);
    const history = state.history as { steps: { step: number; examples: number; shards: number }[]; events: { kind: string; message: string }[] };
    // Every step reduced exactly the global batch: no shard lost, none counted twice.
    assert.deepEqual(history.steps.map((s) => s.step), Array.from({ length: steps }, (_, i) => i + 1));
    for (const s of history.steps) assert.equal(s.examples, 64, `step ${s.step} reduced ${s.examples} examples`);
    assert.ok(history.events.some((e) => e.kind === 'join' && e.message.startsWith(`worker ${joinerId} `)), 'the join is logged');
    assert.ok(history.events.some((e) => e.kind === 'leave' && e.message.startsWith(`worker ${slowId} `)), 'the leave is logged');
    assert.ok(
      history.events.some((e) => e.kind === 'reissue' && e.message.includes(`worker ${slowId} left`)),
      "the killed worker's shard was re-issued",
    );
  } finally {
    await Promise.all(procs.map((p) => p.kill()));
    await c.proc.kill();
    await rm(dir, { recursive: true, force: true });
  }
});

test('resume: a coordinator killed with SIGKILL continues from its last checkpoint with identical weights', { timeout: 180_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-resume-'));
  let c = await startCoordinator(runArgs(dir));
  let worker = startWorker(c.url, c.token);
  try {
    await waitFor('a checkpoint', async () => (await readdir(dir)).some((f) => f.endsWith('.chorus')) && (await c.status()).step >= 5);
    await c.proc.kill('SIGKILL');
    await worker.kill();
    const files = (await readdir(dir)).filter((f) => f.endsWith('.chorus')).sort();
    const saved = decodeCheckpoint(new Uint8Array(await readFile(join(dir, files.at(-1)!))));
    assert.ok(saved.step >= 2 && saved.step < STEPS);
    c = await startCoordinator([...runArgs(dir), '--resume']);
    const resumed = await c.status();
    assert.equal(resumed.step, saved.step);
    const hash = createHash('sha256').update(new Uint8Array(saved.params.buffer, saved.params.byteOffset, saved.params.byteLength)).digest('hex');
    assert.equal(resumed.paramsHash, hash);
    worker = startWorker(c.url, c.token);
    assert.equal(await c.proc.exit(), 0, c.proc.output);
    // Same data order, same optimizer state: the interrupted run ends bit for bit where an
    // uninterrupted one does.
    const final = await finalCheckpoint(dir);
    assert.deepEqual(new Uint32Array(final.params.buffer, final.params.byteOffset, final.params.length), new Uint32Array(reference.params.buffer, reference.params.byteOffset, reference.params.length));
  } finally {
    await worker.kill();
    await c.proc.kill();
    await rm(dir, { recursive: true, force: true });
  }
});

test('load balancing: a worker at half speed ends up with about half the share of a normal one', { timeout: 180_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-balance-'));
  const c = await startCoordinator(['--preset', 'tiny', '--batch', '128', '--bn-group', '4', '--steps', '40', '--eval-examples', '16', '--min-workers', '2']);
  const fast = startWorker(c.url, c.token, ['--slowdown', '1']);
  const slow = startWorker(c.url, c.token, ['--slowdown', '2']);
  try {
    await waitFor('12 steps', async () => (await c.status()).step >= 12, 120_000);
    // The shares of five different steps: one step's speeds can be thrown by whatever else the
    // two shared cores run at that moment; the balancing shows in the median.
    const samples: number[][] = [];
    let seenStep = -1;
    await waitFor('the shares of five steps', async () => {
      const s = await c.status();
      const [a, b] = s.workers;
      if (s.step !== seenStep && a?.lastShard && b?.lastShard) {
        seenStep = s.step;
        // Worker order is join order, which may differ from start order: tell them apart by share.
        samples.push([a.lastShard, b.lastShard].sort((x, y) => x - y));
      }
      return samples.length >= 5;
    }, 120_000);
    const ratios = samples.map(([slow, fast]) => slow! / fast!).sort((x, y) => x - y);
    const ratio = ratios[2]!;
    // Ideal is 0.5; shares move in groups of 4 of 128.
    assert.ok(ratio > 0.3 && ratio < 0.75, `median slow/fast share ratio ${ratio} (${samples.map((p) => p.join('/')).join(', ')})`);
  } finally {
    await Promise.all([fast.kill(), slow.kill(), c.proc.kill()]);
    await rm(dir, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------------------------------
// Faults inside a step, checked against the single-process reference. These runs use a batch
// of two BatchNorm groups and workers with micro-batches of one group, so every split, every
// re-issue and the reference add the same two group gradients in the same order: the weights
// of a disturbed run are then those of an undisturbed one, not merely close. (With more groups
// the float32 summation order changes with the split, and over ten or more steps of this
// model the rounding noise grows to 1e-4..1e-2 of the weights even within one process, for
// micro-batch sizes alone: too much to tell a fault from noise. With Adam, which divides by
// the gradient's running RMS, even faster.)

const twoGroups = { batch: 16, bnGroup: 8, microBatch: 8 };
const twoGroupArgs = (dir: string, steps: number, optimizer: OptimizerName = 'sgd', lr = 0.2) => [
  '--preset', 'tiny', '--batch', String(twoGroups.batch), '--bn-group', String(twoGroups.bnGroup), '--steps', String(steps),
  '--optimizer', optimizer, '--lr', String(lr), '--warmup', '1', '--seed', '9', '--eval-examples', '16',
  '--checkpoint-dir', dir, '--checkpoint-every', '2',
];
const twoGroupWorker = (c: CoordinatorProc, extra: string[] = []) => startWorker(c.url, c.token, ['--micro-batch', String(twoGroups.microBatch), ...extra]);

function twoGroupReference(steps: number, optimizer: OptimizerName = 'sgd', lr = 0.2) {
  return trainLocally(
    {
      spec: PRESETS.tiny, steps, batch: twoGroups.batch, lr, optimizer, weightDecay: 5e-4, warmupSteps: 1, schedule: 'cosine',
      bnGroup: twoGroups.bnGroup, microBatch: twoGroups.microBatch, seed: 9, augment: true, evalEvery: 0, evalExamples: 16,
    },
    data,
  );
}

type History = { steps: { step: number; examples: number; shards: number; perWorker: Record<string, number> }[]; events: { kind: string; message: string }[] };

/** The final checkpoint: every step reduced the whole batch, and the weights are the reference's. */
async function assertLikeReference(dir: string, steps: number, reference: Float32Array, t: { diagnostic(message: string): void }) {
  const state = await finalCheckpoint(dir, steps);
  const history = state.history as History;
  assert.deepEqual(history.steps.map((s) => s.step), Array.from({ length: steps }, (_, i) => i + 1));
  for (const s of history.steps) assert.equal(s.examples, twoGroups.batch, `step ${s.step} reduced ${s.examples} examples`);
  const diff = relativeMaxDiff(state.params, reference);
  t.diagnostic(`max |diff| / max |w| against the single-process reference = ${diff.toExponential(2)}`);
  assert.ok(diff < EQUIVALENCE_TOLERANCE, `max |diff| / max |w| = ${diff}`);
  return history;
}

async function control(c: CoordinatorProc, action: 'pause' | 'resume'): Promise<void> {
  const r = await fetch(`http://127.0.0.1:${c.port}/api/control`, {
    method: 'POST',
    headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ action }),
  });
  assert.equal(r.status, 200, `${action}: ${await r.text()}`);
}

const idOf = (p: Proc) => waitFor('a worker id', () => /joined as (w\d+)/.exec(p.output)?.[1]);
const eventsOf = async (c: CoordinatorProc) => (await c.status()).events.map((e) => `${e.kind}: ${e.message}`);

/**
 * Stops `slow` (SIGSTOP) once step 2 is done and waits until a shard it held has gone to another
 * worker and that step has completed without it. Stopped, it holds a shard of the current step or
 * is given one of the next: either way the deadline passes and the shard goes to the idle worker.
 */
async function stopUntilReissued(c: CoordinatorProc, slow: Proc): Promise<{ slowId: string; stoppedAt: number; reissuedIn: number }> {
  const slowId = await idOf(slow);
  await waitFor('step 2', async () => (await c.status()).step >= 2);
  slow.child.kill('SIGSTOP');
  const stoppedAt = (await c.status()).step;
  const reissuedIn = await waitFor(`the shard of ${slowId} to be re-issued`, async () => {
    for (const e of await eventsOf(c)) {
      const m = /^reissue: shard \[\d+, \d+\) of step (\d+) re-issued: worker (\w+) missed its deadline$/.exec(e);
      if (m && m[2] === slowId) return Number(m[1]);
    }
    return null;
  });
  await waitFor(`step ${reissuedIn} to complete`, async () => (await c.status()).step > reissuedIn);
  return { slowId, stoppedAt, reissuedIn };
}

test('straggler: a worker stopped (SIGSTOP) mid-step has its shard re-issued and the step completes; its late answer is refused', { timeout: 180_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-straggler-'));
  const steps = 8;
  const reference = twoGroupReference(steps);
  const c = await startCoordinator([...twoGroupArgs(dir, steps), '--min-workers', '2']);
  // Three times slower: it holds its shard most of the time, so the stop lands mid-shard.
  const slow = twoGroupWorker(c, ['--slowdown', '3']);
  const fast = twoGroupWorker(c);
  try {
    const { slowId, stoppedAt, reissuedIn } = await stopUntilReissued(c, slow);
    assert.ok(reissuedIn >= stoppedAt, `re-issued in step ${reissuedIn}, stopped at ${stoppedAt}`);
    const during = await c.status();
    assert.equal(during.workers.find((w) => w.id === slowId)?.state, 'straggling');
    assert.ok(during.events.some((e) => e.kind === 'straggler' && e.message.startsWith(`worker ${slowId} missed the deadline`)));
    slow.child.kill('SIGCONT');
    assert.equal(await c.proc.exit(), 0, c.proc.output);
    // Its late gradients reached a coordinator that had the shards from someone else: counted
    // nowhere, so the weights are exactly those of the undisturbed single-process run.
    await assertLikeReference(dir, steps, (await reference).params, t);
  } finally {
    await Promise.all([slow.kill(), fast.kill()]);
    await c.proc.kill();
    await rm(dir, { recursive: true, force: true });
  }
});

test('straggler under int8: its late gradient is not counted, and it takes back what its error feedback kept of it', { timeout: 180_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-straggler-int8-'));
  // Long enough that the run is still going when the stopped worker wakes and reads the update.
  const steps = 60;
  const c = await startCoordinator([...twoGroupArgs(dir, steps), '--min-workers', '2', '--codec', 'int8']);
  const slow = twoGroupWorker(c, ['--slowdown', '3']);
  const fast = twoGroupWorker(c);
  try {
    await stopUntilReissued(c, slow);
    slow.child.kill('SIGCONT');
    // It finishes the shard, sends it late, then reads the update that counted the other
    // worker's shard instead of its own.
    await waitFor('the woken worker to take back its uncounted gradient', () => /a gradient of this worker was not counted/.test(slow.output));
    assert.equal(await c.proc.exit(), 0, c.proc.output);
    assert.equal((await finalCheckpoint(dir, steps)).step, steps);
  } finally {
    await Promise.all([slow.kill(), fast.kill()]);
    await c.proc.kill();
    await rm(dir, { recursive: true, force: true });
  }
});

test('heartbeat: a worker silent past --heartbeat-timeout is dropped, training goes on, and it rejoins when it wakes', { timeout: 180_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-heartbeat-'));
  // Room after the rejoin: a tiny-model step takes tens of milliseconds, so several run
  // between a status poll and the pause it triggers.
  const steps = 24;
  const reference = twoGroupReference(steps);
  // Heartbeats come every 2 s; 6 s of silence is far past what a busy healthy worker shows.
  const c = await startCoordinator([...twoGroupArgs(dir, steps), '--min-workers', '2', '--heartbeat-timeout', '6000']);
  // Both at the same speed, so the balancer gives each a group once it is back (a slower one
  // may rightly get none: both groups on the faster worker can take no longer).
  const sleeper = twoGroupWorker(c);
  const other = twoGroupWorker(c);
  try {
    const id = await idOf(sleeper);
    await waitFor('step 2', async () => (await c.status()).step >= 2);
    // Paused while it is silent, so that a fast run cannot end before the drop and the rejoin
    // have been seen: the heartbeat timeout does not depend on training.
    await control(c, 'pause');
    sleeper.child.kill('SIGSTOP');
    await waitFor(`${id} to be dropped`, async () => (await c.status()).workers.find((w) => w.id === id)?.state === 'left');
    const dropped = await c.status();
    assert.ok(
      dropped.events.some((e) => e.kind === 'leave' && new RegExp(`^worker ${id} timed out \\(silent for \\d+ s\\)$`).test(e.message)),
      dropped.events.map((e) => `${e.kind}: ${e.message}`).join('\n'),
    );
    assert.ok(dropped.step < steps - 3, `paused at step ${dropped.step} of ${steps}`);
    await control(c, 'resume');
    await waitFor('two steps without it', async () => (await c.status()).step >= dropped.step + 2);
    // Woken, it finds its connection gone and comes back under the same id. Paused meanwhile,
    // so the run cannot end before it is back.
    await control(c, 'pause');
    sleeper.child.kill('SIGCONT');
    await waitFor(`${id} to rejoin`, async () => (await eventsOf(c)).filter((e) => e.startsWith(`join: worker ${id} joined`)).length === 2);
    const rejoinedAt = (await c.status()).step;
    assert.ok(rejoinedAt <= steps - 4, `rejoined at step ${rejoinedAt} of ${steps}: no room left to train`);
    await control(c, 'resume');
    assert.equal(await c.proc.exit(), 0, c.proc.output);
    // That it trained again is read from the run's own record (the steps' per-worker speeds in
    // the final checkpoint), not from a live state poll that a fast run can finish before.
    const history = await assertLikeReference(dir, steps, (await reference).params, t);
    const after = history.steps.filter((s) => s.step > rejoinedAt);
    assert.ok(after.length > 0 && after.some((s) => id in s.perWorker), `${id} computed none of the steps after ${rejoinedAt}: ${JSON.stringify(after.map((s) => Object.keys(s.perWorker)))}`);
  } finally {
    await Promise.all([sleeper.kill(), other.kill()]);
    await c.proc.kill();
    await rm(dir, { recursive: true, force: true });
  }
});

test('resume with Adam and two workers: a coordinator killed with SIGKILL and resumed ends where an undisturbed run does', { timeout: 180_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-resume-adam-'));
  const steps = 12;
  const args = twoGroupArgs(dir, steps, 'adam', 0.01);
  const reference = twoGroupReference(steps, 'adam', 0.01);
  let c = await startCoordinator([...args, '--min-workers', '2']);
  let workers = [twoGroupWorker(c), twoGroupWorker(c)];
  try {
    await waitFor('a checkpoint after step 4', async () => (await readdir(dir)).some((f) => f.endsWith('.chorus')) && (await c.status()).step >= 5);
    await c.proc.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.kill()));
    const files = (await readdir(dir)).filter((f) => f.endsWith('.chorus')).sort();
    const saved = decodeCheckpoint(new Uint8Array(await readFile(join(dir, files.at(-1)!))));
    assert.ok(saved.step >= 2 && saved.step < steps, `checkpoint at step ${saved.step}`);
    assert.equal(saved.optimizer.kind, 'adam');
    c = await startCoordinator([...args, '--min-workers', '2', '--resume']);
    assert.equal((await c.status()).step, saved.step);
    workers = [twoGroupWorker(c), twoGroupWorker(c)];
    assert.equal(await c.proc.exit(), 0, c.proc.output);
    // Adam's moments and its update count came back with the weights: a lost or reset moment
    // moves every weight by about the learning rate, far past the tolerance.
    const history = await assertLikeReference(dir, steps, (await reference).params, t);
    assert.ok(history.steps.every((s) => s.shards >= 2), `every step was shared: ${history.steps.map((s) => s.shards)}`);
    assert.ok(history.events.some((e) => e.kind === 'resume'), 'the resume is logged');
  } finally {
    await Promise.all(workers.map((w) => w.kill()));
    await c.proc.kill();
    await rm(dir, { recursive: true, force: true });
  }
});
