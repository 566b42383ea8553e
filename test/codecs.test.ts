import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { selectNodeBackend } from '@chorus/backend/node';
import { CheckpointStore, ChorusServer, Coordinator, DEFAULT_RUN_OPTIONS, createLogger, createMetrics, type RunConfig } from '@chorus/coordinator';
import { loadCifar10 } from '@chorus/data/node';
import { PRESETS } from '@chorus/model';
import { connectWs } from '@chorus/node-worker';
import { encodeMessage, parseMessage, type CodecName } from '@chorus/protocol';
import { ChorusWorker, type Connect } from '@chorus/worker';
import { bounded, cifarDir } from './support.js';

tf.env().set('PROD', true);
await selectNodeBackend({ force: 'wasm' });
const data = await loadCifar10(cifarDir);

const base: RunConfig = {
  preset: 'tiny',
  spec: PRESETS.tiny,
  batch: 64,
  steps: 100,
  lr: 0.1,
  optimizer: 'sgd',
  weightDecay: 5e-4,
  warmupSteps: 2,
  schedule: 'constant',
  bnGroup: 16,
  seed: 3,
  augment: false,
};

const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/**
 * A coordinator with two in-process workers over real WebSockets, run to `config.steps`
 * (from a checkpoint in `checkpointDir` when `resume`). Returns the losses of the steps run,
 * the test accuracy, the master and public weights and what each worker holds.
 */
async function run(config: RunConfig, options: { checkpointDir?: string; resume?: boolean; stopAt?: number; evalEvery?: number } = {}) {
  const checkpoints = options.checkpointDir ? new CheckpointStore(options.checkpointDir, { log: () => {} }) : undefined;
  const metrics = createMetrics();
  const coordinator = new Coordinator({
    config,
    options: { ...DEFAULT_RUN_OPTIONS, minWorkers: 2, evalExamples: 1000, checkpointEvery: 0, ...(options.evalEvery !== undefined ? { evalEvery: options.evalEvery } : {}) },
    data,
    token: 'secret',
    log: createLogger({ quiet: true }),
    metrics,
    checkpoints,
  });
  const resumedWith = options.resume && (await coordinator.resume()) ? { master: coordinator.params.slice(), publicWeights: coordinator.workerParams.slice(), factors: coordinator.lowRank?.factors.slice() } : null;
  if (options.resume) assert.ok(resumedWith, 'resumed from the checkpoint');
  if (options.stopAt !== undefined) {
    const stopAt = options.stopAt;
    coordinator.subscribe((message) => {
      if (message.type === 'step' && message.step.step >= stopAt) coordinator.stop();
    });
  }
  const server = new ChorusServer({ host: '127.0.0.1', port: 0, coordinator, metrics, log: createLogger({ quiet: true }) });
  const { port } = await server.listen();
  const workers = [8, 32].map(
    (microBatch, i) =>
      new ChorusWorker({
        url: `ws://127.0.0.1:${port}/ws`,
        token: 'secret',
        connect: connectWs,
        runtime: { kind: 'node', backend: 'wasm', device: 'test', cores: 1, microBatch, agent: `worker ${i}` },
      }),
  );
  const running = workers.map((w) => w.start());
  try {
    await bounded(coordinator.run(), 240_000, `the ${config.codec ?? 'fp32'}${config.lowRank ? ` low-rank ${config.lowRank}` : ''} run to end`);
    if (options.stopAt !== undefined) await coordinator.checkpoint();
    return {
      resumedWith,
      step: coordinator.step,
      losses: coordinator.history.steps.map((s) => s.loss),
      accuracy: coordinator.history.evals.at(-1)?.accuracy ?? 0,
      evaluatedAt: coordinator.history.evals.map((e) => e.step),
      master: coordinator.params.slice(),
      publicWeights: coordinator.workerParams.slice(),
      held: workers.map((w) => w.publicWeights()),
      factors: coordinator.lowRank?.factors.slice(),
      heldFactors: workers.map((w) => w.lowRankFactors()),
      bytesReceived: (await metrics.registry.getSingleMetric('chorus_bytes_received_total')?.get())?.values[0]?.value ?? NaN,
      refused: coordinator.history.events.filter((e) => e.kind === 'refused').map((e) => e.message),
    };
  } finally {
    coordinator.stop();
    for (const w of workers) w.stop();
    await Promise.allSettled(running);
    await server.close();
  }
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

for (const [codec, lowRank] of [['fp16'], ['int8'], ['int8', 2]] as [CodecName, number?][]) {
  const name = `${codec}${lowRank ? ` with low-rank ${lowRank} gradients` : ''}`;
  test(`${name}: a short run trains, and both workers hold the coordinator's public weights bit for bit`, { timeout: 300_000 }, async (t) => {
    const result = await run({ ...base, codec, ...(lowRank ? { lowRank } : {}) });
    assert.equal(result.step, base.steps, 'every step completed');
    assert.deepEqual(result.refused, [], 'no gradient was refused');
    const first = mean(result.losses.slice(0, 5));
    const last = mean(result.losses.slice(-5));
    t.diagnostic(`${name}: loss ${first.toFixed(3)} -> ${last.toFixed(3)}, ${(result.bytesReceived / 1e3).toFixed(0)} kB received, test accuracy ${(100 * result.accuracy).toFixed(1)}% (1000 images)`);
    assert.ok(last < first - 0.2, `the loss goes down: ${first} -> ${last}`);
    // Chance is 10%; over 1000 images 13% is three standard deviations above it.
    assert.ok(result.accuracy > 0.13, `test accuracy above chance: ${result.accuracy}`);
    for (const [i, held] of result.held.entries()) {
      assert.ok(held, `worker ${i} holds public weights`);
      assert.ok(bytesOf(held).equals(bytesOf(result.publicWeights)), `worker ${i}'s weights are the coordinator's public weights, bit for bit`);
    }
    // The public weights trail the master by one rounding, not by a drift.
    let gap = 0;
    let scale = 0;
    for (let i = 0; i < result.master.length; i++) {
      gap = Math.max(gap, Math.abs(result.master[i] - result.publicWeights[i]));
      scale = Math.max(scale, Math.abs(result.master[i]));
    }
    if (lowRank) {
      for (const [i, factors] of result.heldFactors.entries()) {
        assert.ok(factors && bytesOf(factors).equals(bytesOf(result.factors!)), `worker ${i} projects onto the coordinator's factors, bit for bit`);
      }
    }
    t.diagnostic(`${name}: max |master - public| = ${gap.toExponential(2)} (max |w| ${scale.toFixed(3)})`);
    assert.ok(gap < 1e-2 * scale, `public weights stay close to the master: ${gap}`);
  });
}

for (const [codec, lowRank] of [['int8'], ['int8', 2], ['fp32', 2]] as [CodecName, number?][]) test(`${codec}${lowRank ? ' with low-rank gradients' : ''}: a resumed run starts from the weights the workers held${lowRank ? ' and the factors of its step' : ''}, bit for bit, and its workers hold them`, { timeout: 300_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-codecs-'));
  try {
    const config: RunConfig = { ...base, steps: 6, ...(codec === 'fp32' ? {} : { codec }), ...(lowRank ? { lowRank } : {}) };
    // Stopped after step 3 and checkpointed, as on SIGTERM: before the evaluation due at step 3.
    const first = await run(config, { checkpointDir: dir, stopAt: 3, evalEvery: 3 });
    assert.equal(first.step, 3);
    assert.deepEqual(first.evaluatedAt, [], 'the stop came before the evaluation at step 3');
    if (codec !== 'fp32') assert.ok(!bytesOf(first.master).equals(bytesOf(first.publicWeights)), 'the public weights are not the master weights');
    const resumed = await run(config, { checkpointDir: dir, resume: true, evalEvery: 3 });
    assert.deepEqual(resumed.evaluatedAt, [3, 6], 'the resumed run evaluates step 3 first, then the end');
    assert.ok(bytesOf(resumed.resumedWith!.master).equals(bytesOf(first.master)), 'master weights restored bit for bit');
    assert.ok(bytesOf(resumed.resumedWith!.publicWeights).equals(bytesOf(first.publicWeights)), 'public weights restored bit for bit');
    if (lowRank) {
      // Step 3 is a left step: a resume from the step-0 factors (or a right step's) would be refused or diverge.
      assert.ok(resumed.resumedWith!.factors && bytesOf(resumed.resumedWith!.factors).equals(bytesOf(first.factors!)), 'low-rank factors restored bit for bit');
      for (const factors of resumed.heldFactors) assert.ok(factors && bytesOf(factors).equals(bytesOf(resumed.factors!)), 'the resumed workers hold the factors');
    }
    assert.equal(resumed.step, 6);
    if (codec !== 'fp32') for (const held of resumed.held) assert.ok(bytesOf(held!).equals(bytesOf(resumed.publicWeights)), 'the resumed workers hold the public weights');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a worker built before low-rank gradients is refused once at hello, with the reason, and stops; an older run still admits it', { timeout: 120_000 }, async () => {
  // The real worker, with a transport that sends its hello as a build without features would.
  const asOlderBuild: Connect = async (url, events) => {
    const transport = await connectWs(url, events);
    return {
      send(frame) {
        const message = parseMessage(frame);
        if (message.type !== 'hello') return transport.send(frame);
        const { features: _features, ...older } = message;
        transport.send(encodeMessage(older));
      },
      close: (code, reason) => transport.close(code, reason),
    };
  };
  for (const lowRank of [2, undefined]) {
    const metrics = createMetrics();
    const coordinator = new Coordinator({
      config: { ...base, steps: 2, codec: 'int8', ...(lowRank ? { lowRank } : {}) },
      options: { ...DEFAULT_RUN_OPTIONS, minWorkers: 1, evalEvery: 0, evalExamples: 0, checkpointEvery: 0 },
      data,
      token: 'secret',
      log: createLogger({ quiet: true }),
      metrics,
    });
    const server = new ChorusServer({ host: '127.0.0.1', port: 0, coordinator, metrics, log: createLogger({ quiet: true }) });
    const { port } = await server.listen();
    const worker = new ChorusWorker({
      url: `ws://127.0.0.1:${port}/ws`,
      token: 'secret',
      connect: asOlderBuild,
      runtime: { kind: 'node', backend: 'wasm', device: 'test', cores: 1, microBatch: 32, agent: 'older build' },
    });
    const running = coordinator.run();
    try {
      if (lowRank) {
        await assert.rejects(bounded(worker.start(), 30_000, 'the older worker to stop'), /low-rank gradients \(--low-rank 2\); this worker's build does not: update it/);
        const refusals = coordinator.history.events.filter((e) => e.kind === 'refused');
        assert.equal(refusals.length, 1, `refused once, not in a loop: ${JSON.stringify(refusals)}`);
        assert.equal(coordinator.step, 0, 'nothing trained');
      } else {
        const working = worker.start();
        await bounded(running, 60_000, 'the run without low-rank to end');
        worker.stop();
        await working;
        assert.equal(coordinator.step, 2, 'the older worker trained the run');
      }
    } finally {
      coordinator.stop();
      worker.stop();
      await running.catch(() => undefined);
      await server.close();
    }
  }
});
