import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadCifar10 } from '@chorus/data/node';
import { PRESETS } from '@chorus/model';
import { selectNodeBackend } from '@chorus/backend/node';
import { trainLocally, type LocalTrainingConfig } from '../src/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const data = await loadCifar10(process.env.CHORUS_CIFAR_DIR ?? resolve(here, '../../../../shared/datasets/cifar-10-batches-bin'));
await selectNodeBackend({ force: 'wasm' });

const config: LocalTrainingConfig = {
  spec: PRESETS.tiny,
  steps: 3,
  batch: 32,
  lr: 0.1,
  optimizer: 'sgd',
  weightDecay: 5e-4,
  warmupSteps: 1,
  schedule: 'cosine',
  bnGroup: 16,
  microBatch: 32,
  seed: 3,
  augment: true,
  evalEvery: 2,
  evalExamples: 50,
};

test('a run is reproducible: same seed, same weights, whatever the micro-batch size', async () => {
  const evals: number[] = [];
  const a = await trainLocally(config, data, { onEval: (r) => evals.push(r.step) });
  const b = await trainLocally({ ...config, microBatch: 16 }, data);
  assert.deepEqual(evals, [2, 3]);
  let maxDiff = 0;
  for (let i = 0; i < a.params.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a.params[i] - b.params[i]));
  // Same groups, only the summation order of the gradient differs: float32 rounding.
  assert.ok(maxDiff < 1e-5, `max diff ${maxDiff}`);
  const c = await trainLocally({ ...config, seed: 4 }, data);
  assert.notDeepEqual(c.params, a.params);
});

test('a diverging run stops with a clear error instead of training on NaNs', async () => {
  await assert.rejects(trainLocally({ ...config, lr: 1e30, warmupSteps: 0, evalEvery: 0 }, data), /training diverged at step \d+/);
});
