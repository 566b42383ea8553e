import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectNodeBackend } from '@chorus/backend/node';
import { ChorusServer, Coordinator, DEFAULT_RUN_OPTIONS, createLogger, createMetrics, type RunConfig } from '@chorus/coordinator';
import { loadCifar10 } from '@chorus/data/node';
import { trainLocally } from '@chorus/local-trainer';
import { PRESETS } from '@chorus/model';
import { connectWs } from '@chorus/node-worker';
import { ChorusWorker } from '@chorus/worker';
import { cifarDir } from './support.js';

tf.env().set('PROD', true);
await selectNodeBackend({ force: 'wasm' });
const data = await loadCifar10(cifarDir);

const config: RunConfig = {
  preset: 'tiny',
  spec: PRESETS.tiny,
  batch: 48,
  steps: 4,
  lr: 0.2,
  optimizer: 'sgd',
  weightDecay: 5e-4,
  warmupSteps: 1,
  schedule: 'cosine',
  bnGroup: 8,
  seed: 11,
  augment: true,
};

/** Runs a coordinator with `n` in-process workers (real WebSockets on 127.0.0.1) to the end. */
async function distributed(n: number, microBatches: number[]): Promise<{ params: Float32Array; shards: number[] }> {
  const coordinator = new Coordinator({
    config,
    options: { ...DEFAULT_RUN_OPTIONS, minWorkers: n, evalExamples: 16, checkpointEvery: 0 },
    data,
    token: 'secret',
    log: createLogger({ quiet: true }),
    metrics: createMetrics(),
  });
  const server = new ChorusServer({ host: '127.0.0.1', port: 0, coordinator, metrics: createMetrics(), log: createLogger({ quiet: true }) });
  const { port } = await server.listen();
  const workers = Array.from({ length: n }, (_, i) =>
    new ChorusWorker({
      url: `ws://127.0.0.1:${port}/ws`,
      token: 'secret',
      connect: connectWs,
      runtime: { kind: 'node', backend: 'wasm', device: 'test', cores: 1, microBatch: microBatches[i], agent: `worker ${i}` },
    }),
  );
  const running = workers.map((w) => w.start());
  await coordinator.run();
  const shards = coordinator.membership.all().map((w) => w.shardsDone);
  for (const w of workers) w.stop();
  await Promise.all(running);
  await server.close();
  return { params: coordinator.params, shards };
}

function relativeMaxDiff(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

test('2 and 3 workers reach the same master weights as one process training on the whole batch', async (t) => {
  // The reference: one replica computes the gradient of each whole global batch, in
  // micro-batches of one BatchNorm group, and takes the same optimizer steps.
  const reference = await trainLocally(
    { ...config, microBatch: 8, evalEvery: 0, evalExamples: 16 },
    data,
  );
  for (const [n, micro] of [
    [2, [16, 48]],
    [3, [8, 24, 1000]],
  ] as const) {
    const { params, shards } = await distributed(n, [...micro]);
    assert.ok(shards.every((s) => s >= config.steps), `every worker took part in every step: ${shards}`);
    // Shards are cut on BatchNorm group boundaries, so each worker computes exactly what the
    // reference computes for those examples; only the float32 summation order of the gradient
    // differs (about 1e-7 relative per addition). Over 4 steps that stays far below 1e-5,
    // while a shard lost, counted twice, or normalised with the wrong group moves the weights
    // by 1e-3 or more.
    const diff = relativeMaxDiff(params, reference.params);
    t.diagnostic(`${n} workers: max |diff| / max |w| = ${diff.toExponential(2)}`);
    assert.ok(diff < 1e-5, `${n} workers: max |diff| / max |w| = ${diff}`);
  }
});
