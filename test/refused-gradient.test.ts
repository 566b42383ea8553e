import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectNodeBackend } from '@chorus/backend/node';
import { ChorusServer, Coordinator, DEFAULT_RUN_OPTIONS, createLogger, createMetrics, type RunConfig } from '@chorus/coordinator';
import { loadCifar10 } from '@chorus/data/node';
import { trainLocally } from '@chorus/local-trainer';
import { PRESETS } from '@chorus/model';
import { connectWs } from '@chorus/node-worker';
import { CLOSE_CODES, type Assign, type Message } from '@chorus/protocol';
import { ChorusWorker } from '@chorus/worker';
import { RogueWorker, gradientFor } from './rogue-worker.js';
import { EQUIVALENCE_TOLERANCE, bounded, cifarDir, relativeMaxDiff, waitFor } from './support.js';

/**
 * A worker that holds a shard and answers it with a poisoned gradient is refused and closed;
 * its shard goes to the honest worker, and the weights end exactly where an undisturbed run's
 * do (compared with the single-process reference, as test/equivalence.test.ts does).
 */

tf.env().set('PROD', true);
await selectNodeBackend({ force: 'wasm' });
const data = await loadCifar10(cifarDir);

// The configuration of test/equivalence.test.ts (5 BatchNorm groups, a seed whose rounding
// noise stays near 1e-7), one step shorter.
const config: RunConfig = {
  preset: 'tiny', spec: PRESETS.tiny, batch: 40, steps: 3, lr: 0.2, optimizer: 'sgd', weightDecay: 5e-4,
  warmupSteps: 1, schedule: 'cosine', bnGroup: 8, seed: 7, augment: true,
};

let reference: Float32Array | null = null;
async function referenceParams(): Promise<Float32Array> {
  reference ??= (await trainLocally({ ...config, microBatch: 8, evalEvery: 0, evalExamples: 16 }, data)).params;
  return reference;
}

/** Runs the whole run with one honest worker and one rogue whose answer to its shard is `answer`. */
async function runWithRogue(answer: (assign: Assign, layout: Coordinator['layout']) => Message) {
  const metrics = createMetrics();
  const coordinator = new Coordinator({
    config,
    // Both must be in before the first step, so the rogue surely holds a shard of step 0.
    options: { ...DEFAULT_RUN_OPTIONS, minWorkers: 2, evalExamples: 16, checkpointEvery: 0 },
    data,
    token: 'secret',
    log: createLogger({ quiet: true }),
    metrics,
  });
  const server = new ChorusServer({ host: '127.0.0.1', port: 0, coordinator, metrics, log: createLogger({ quiet: true }) });
  const { port } = await server.listen();
  const url = `ws://127.0.0.1:${port}/ws`;
  const rogue = new RogueWorker(url, 'secret', (assign) => answer(assign, coordinator.layout));
  const honest = new ChorusWorker({
    url,
    token: 'secret',
    connect: connectWs,
    runtime: { kind: 'node', backend: 'wasm', device: 'test', cores: 1, microBatch: 8, agent: 'honest worker' },
  });
  const running = honest.start();
  try {
    await bounded(coordinator.run(), 60_000, 'the run to end');
    const closed = await bounded(rogue.closed, 10_000, 'the rogue to be closed');
    await waitFor('the rogue to be gone', () => coordinator.membership.all().find((w) => w.id === rogue.workerId)?.state === 'left', 10_000);
    return { coordinator, rogue, closed, metrics: await metrics.metrics() };
  } finally {
    coordinator.stop();
    rogue.close();
    honest.stop();
    await Promise.allSettled([running]);
    await server.close();
  }
}

async function assertRefusedAndRecovered(r: Awaited<ReturnType<typeof runWithRogue>>, why: RegExp): Promise<void> {
  const { coordinator, rogue, closed } = r;
  const events = coordinator.history.events.map((e) => `${e.kind}: ${e.message}`);
  const id = rogue.workerId;
  assert.ok(id && rogue.assigned, `the rogue joined and was given a shard:\n${events.join('\n')}`);
  // Refused with the reason, and closed.
  assert.equal(closed.code, CLOSE_CODES.badGradient, `close ${closed.code} ${closed.reason}`);
  assert.ok(rogue.errors.some((e) => e.startsWith('bad-gradient: ') && why.test(e)), `errors sent to the rogue: ${rogue.errors}`);
  assert.match(r.metrics, /chorus_messages_refused_total\{reason="bad-gradient"\} 1/);
  assert.ok(events.some((e) => e.startsWith(`refused: refused a message from ${id}: `)), events.join('\n'));
  // Its shard was re-issued, and every step reduced the whole batch exactly once.
  assert.ok(events.some((e) => /^reissue: shard \[\d+, \d+\) of step 0 re-issued: worker /.test(e) && e.endsWith(`worker ${id} left`)), events.join('\n'));
  assert.equal(coordinator.step, config.steps);
  assert.deepEqual(coordinator.history.steps.map((s) => s.examples), Array(config.steps).fill(config.batch));
  assert.ok(coordinator.history.steps.every((s) => Number.isFinite(s.loss)), 'no NaN reached the reduction');
  const diff = relativeMaxDiff(coordinator.params, await referenceParams());
  assert.ok(diff < EQUIVALENCE_TOLERANCE, `max |diff| / max |w| = ${diff}`);
}

test('a worker that answers its shard with a NaN gradient is refused; its shard is re-issued; the weights are those of an undisturbed run', { timeout: 120_000 }, async (t) => {
  const r = await runWithRogue((assign, layout) => {
    const message = gradientFor(assign, layout.paramCount, layout.bnStatCount);
    message.gradient[123] = NaN;
    return message;
  });
  await assertRefusedAndRecovered(r, /NaN|finite/i);
  t.diagnostic(`max |diff| / max |w| = ${relativeMaxDiff(r.coordinator.params, await referenceParams()).toExponential(2)}`);
});

test('a worker whose gradient counts other than its shard is refused; its shard is re-issued; the weights are those of an undisturbed run', { timeout: 120_000 }, async (t) => {
  const r = await runWithRogue((assign, layout) => {
    // Plausible numbers for one example fewer: a reducer that trusted the count would
    // divide the batch's gradient wrongly.
    const message = gradientFor(assign, layout.paramCount, layout.bnStatCount);
    message.count = assign.indices.length - 1;
    return message;
  });
  await assertRefusedAndRecovered(r, /examples, the gradient says/);
  t.diagnostic(`max |diff| / max |w| = ${relativeMaxDiff(r.coordinator.params, await referenceParams()).toExponential(2)}`);
});
