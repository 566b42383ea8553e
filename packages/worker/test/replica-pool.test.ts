import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { PRESETS, buildGraph, initialParams, weightLayout } from '@chorus/model';
import { Replica } from '@chorus/train';
import { ReplicaPool, computeShard, serveReplica, splitRanges, type FromReplica, type StartReplica, type ToReplica } from '../src/index.js';

await tf.setBackend('cpu');

/**
 * The pool and the replica side without threads: each "replica" is serveReplica in this process,
 * reached through structuredClone as postMessage would copy (the platforms' adapters only start
 * a thread and wire these two calls). Real threads: test/threads.test.ts (Node) and
 * test/browser.test.ts (a tab's Web Workers).
 */
const inProcess =
  (log: { sent: ToReplica[]; failInit?: number }): StartReplica =>
  (index, events) => {
    const onJob = serveReplica(
      (message: FromReplica) => queueMicrotask(() => events.message(structuredClone(message))),
      async () => {
        if (index === log.failInit) throw new Error('no backend here');
      },
    );
    return {
      post: (message) => {
        log.sent.push(message);
        const copy = structuredClone(message);
        queueMicrotask(() => onJob(copy));
      },
      terminate: () => undefined,
    };
  };

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

test('splitRanges: contiguous runs of whole micro-batches, in order, balanced by examples', () => {
  assert.deepEqual(splitRanges([[0, 8], [8, 16], [16, 24], [24, 32]], 2), [[[0, 8], [8, 16]], [[16, 24], [24, 32]]]);
  assert.deepEqual(splitRanges([[0, 8], [8, 12]], 3), [[[0, 8]], [[8, 12]]]);
  assert.deepEqual(splitRanges([[0, 8]], 2), [[[0, 8]]]);
});

test('a pool of replicas returns the bits of one replica; weights and the model are sent only when they change', { timeout: 120_000 }, async () => {
  const spec = PRESETS.tiny;
  const layout = weightLayout(buildGraph(spec));
  const bnGroup = 4;
  const microBatch = 4;
  const count = 12;
  const pixels = Uint8Array.from({ length: count * 3072 }, (_, i) => (i * 7919) % 256);
  const labels = Uint8Array.from({ length: count }, (_, i) => i % 10);
  const indices = Int32Array.from({ length: count }, (_, i) => 11 * i + 1);
  const shard = () => ({ pixels: pixels.slice(), labels: labels.slice(), indices: indices.slice(), augmentSeed: 5 });
  const params = [initialParams(layout, 1), initialParams(layout, 2)];

  const replica = new Replica(spec, { microBatch, bnGroup });
  const reference = [];
  for (const p of params) {
    replica.setParams(p);
    reference.push(await computeShard(replica, shard()));
  }
  replica.dispose();

  const log: { sent: ToReplica[] } = { sent: [] };
  const pool = await ReplicaPool.open(2, inProcess(log));
  try {
    assert.equal(pool.size, 2);
    for (const [version, p] of [0, 0, 1].map((v) => [v, params[v]] as const)) {
      const got = await pool.compute({ spec, bnGroup, microBatch, params: p, paramsVersion: version }, shard());
      const ref = reference[version];
      assert.equal(got.count, count);
      assert.ok(Object.is(got.lossSum, ref.lossSum) && Object.is(got.correct, ref.correct), `weights ${version}: loss ${got.lossSum} vs ${ref.lossSum}`);
      assert.ok(bits(got.gradient).equals(bits(ref.gradient)), `weights ${version}: gradient bits`);
      assert.ok(bits(got.bnMoments).equals(bits(ref.bnMoments)), `weights ${version}: BatchNorm moments bits`);
    }
    // 3 micro-batches over 2 replicas (one, then two), 3 shards: 6 jobs; the model and weights 0
    // go to each replica with its first job, weights 1 with its third.
    assert.deepEqual(log.sent.map((j) => [j.ranges, j.model !== undefined, j.params !== undefined]), [
      [[[0, 4]], true, true],
      [[[0, 4], [4, 8]], true, true],
      [[[0, 4]], false, false],
      [[[0, 4], [4, 8]], false, false],
      [[[0, 4]], false, true],
      [[[0, 4], [4, 8]], false, true],
    ]);
  } finally {
    await pool.close();
  }
});

test('a replica whose backend fails to start fails the pool with its reason', async () => {
  await assert.rejects(ReplicaPool.open(2, inProcess({ sent: [], failInit: 1 }), 'replica thread'), /replica thread 1: no backend here/);
});
