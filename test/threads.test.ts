import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { selectNodeBackend } from '@chorus/backend/node';
import { gatherExamples } from '@chorus/data';
import { loadCifar10 } from '@chorus/data/node';
import { PRESETS, buildGraph, initialParams, weightLayout } from '@chorus/model';
import { ReplicaThreadPool, splitRanges } from '@chorus/node-worker';
import { Replica } from '@chorus/train';
import type { ShardResult } from '@chorus/protocol';
import { computeShard, type ShardModel } from '@chorus/worker';
import { bounded, cifarDir, startCoordinator, startWorker } from './support.js';

tf.env().set('PROD', true);
await selectNodeBackend({ force: 'wasm' });

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

test('micro-batches are shared among threads as contiguous runs in shard order', () => {
  const r: [number, number][] = [[0, 16], [16, 32], [32, 48], [48, 64], [64, 72], [72, 76]];
  for (let parts = 1; parts <= 8; parts++) {
    const runs = splitRanges(r, parts);
    assert.deepEqual(runs.flat(), r, `parts ${parts}`);
    assert.equal(runs.length, Math.min(parts, r.length));
    assert.ok(runs.every((run) => run.length > 0));
  }
  assert.deepEqual(splitRanges([[0, 32], [32, 64]], 2), [[[0, 32]], [[32, 64]]]);
});

test('a shard computed on 1, 2 or 3 threads is bit-identical to the single replica', { timeout: 240_000 }, async () => {
  const data = await loadCifar10(cifarDir);
  const spec = PRESETS.tiny;
  const layout = weightLayout(buildGraph(spec));
  // 76 examples, groups of 8, micro-batches of 16: four full micro-batches, one of a whole
  // group and a trailing partial group, with augmentation; the threads get unequal runs.
  const bnGroup = 8;
  const microBatch = 16;
  const indices = Int32Array.from({ length: 76 }, (_, i) => 131 * i + 3);
  const { pixels, labels } = gatherExamples(data.train, indices);
  const shard = { pixels, labels, indices, augmentSeed: 99 };
  const paramSets = [initialParams(layout, 7), initialParams(layout, 8)];

  const replica = new Replica(spec, { microBatch, bnGroup });
  const reference: ShardResult[] = [];
  for (const params of paramSets) {
    replica.setParams(params);
    reference.push(await computeShard(replica, shard));
  }
  replica.dispose();

  for (const threads of [1, 2, 3]) {
    const pool = await ReplicaThreadPool.start(threads, 'wasm');
    try {
      // Two weight versions in a row: the second must reach every thread.
      for (const [v, params] of paramSets.entries()) {
        const model: ShardModel = { spec, bnGroup, microBatch, params, paramsVersion: v };
        const got = await pool.compute(model, shard);
        const ref = reference[v];
        const what = `${threads} threads, weights ${v}`;
        assert.equal(got.count, ref.count, what);
        assert.ok(Object.is(got.lossSum, ref.lossSum), `${what}: loss ${got.lossSum} vs ${ref.lossSum}`);
        assert.ok(Object.is(got.correct, ref.correct), `${what}: correct ${got.correct} vs ${ref.correct}`);
        assert.ok(bits(got.gradient).equals(bits(ref.gradient)), `${what}: gradient bits differ`);
        assert.ok(bits(got.bnMoments).equals(bits(ref.bnMoments)), `${what}: BatchNorm moments bits differ`);
      }
    } finally {
      await pool.close();
    }
  }
  assert.notEqual(reference[0].lossSum, reference[1].lossSum, 'the two weight sets give different results');
});

test('a --threads 2 worker trains a run to the end next to a --threads 1 worker', { timeout: 180_000 }, async () => {
  const c = await startCoordinator(['--preset', 'tiny', '--batch', '64', '--bn-group', '8', '--steps', '6', '--min-workers', '2', '--eval-examples', '64']);
  const two = startWorker(c.url, c.token, ['--threads', '2', '--micro-batch', '8', '--name', 'two']);
  const one = startWorker(c.url, c.token, ['--threads', '1', '--name', 'one']);
  try {
    assert.equal(await c.proc.exit(150_000), 0, c.proc.output);
    assert.match(two.output, /training on 2 threads/);
    assert.doesNotMatch(one.output, /training on \d+ threads/);
    // Both computed shards of the run (one connection each: the threads are not workers).
    for (const name of ['two', 'one']) assert.match(name === 'two' ? two.output : one.output, new RegExp(`shards done name=${name} `));
    assert.equal((c.proc.output.match(/ joined \(node, wasm/g) ?? []).length, 2, c.proc.output);
    assert.match(c.proc.output, /progress step=6\/6 .* workers=2 /);
    assert.match(c.proc.output, /training finished at step 6/);
    await bounded(Promise.all([two.exit(30_000), one.exit(30_000)]), 40_000, 'the workers to leave');
  } finally {
    await Promise.all([two.kill(), one.kill(), c.proc.kill()]);
  }
});
