/**
 * Training images/s of one Node worker's shard on WASM with 1 replica (what --threads 1 runs:
 * the worker's own replica) and with N replica threads (ReplicaThreadPool): resnet20v2, a
 * batch-128 shard of real CIFAR-10 with augmentation, BatchNorm groups and micro-batches of 32.
 * Also checks that every thread count gives the same bits.
 *
 *   cd apps/node-worker && npx tsx bench/threads.bench.ts [--steps 3] [--threads 2]
 */
import { availableParallelism } from 'node:os';
import { Command } from 'commander';
import * as tf from '@tensorflow/tfjs';
import { selectNodeBackend } from '@chorus/backend/node';
import { gatherExamples } from '@chorus/data';
import { fileURLToPath } from 'node:url';
import { loadCifar10 } from '@chorus/data/node';
import { PRESETS, buildGraph, initialParams, weightLayout } from '@chorus/model';
import type { ShardResult } from '@chorus/protocol';
import { Replica } from '@chorus/train';
import { computeShard, type ShardInput } from '@chorus/worker';
import { ReplicaThreadPool } from '../src/threads/pool.js';

const opts = new Command()
  .option('--steps <n>', 'timed shards per setting (after one warm-up shard)', Number, 3)
  .option('--threads <n>', 'largest thread count', Number, availableParallelism())
  .option('--batch <n>', 'examples per shard', Number, 128)
  .option('--data <dir>', 'CIFAR-10 directory (default: CHORUS_CIFAR_DIR, else ../shared/datasets/cifar-10-batches-bin)')
  .parse()
  .opts<{ steps: number; threads: number; batch: number; data?: string }>();

tf.env().set('PROD', true);
await selectNodeBackend({ force: 'wasm', selfTest: false });
// Where the tests find CIFAR-10 unless told.
const defaultDir = fileURLToPath(new URL('../../../../shared/datasets/cifar-10-batches-bin', import.meta.url));
const data = await loadCifar10(opts.data ?? process.env.CHORUS_CIFAR_DIR ?? defaultDir);
const spec = PRESETS.resnet20v2;
const layout = weightLayout(buildGraph(spec));
const params = initialParams(layout, 1);
const bnGroup = 32;
const microBatch = 32;
const shards: ShardInput[] = Array.from({ length: opts.steps + 1 }, (_, s) => {
  const indices = Int32Array.from({ length: opts.batch }, (_, i) => (s * opts.batch + i * 37) % data.train.count);
  const { pixels, labels } = gatherExamples(data.train, indices);
  return { pixels, labels, indices, augmentSeed: 1000 + s };
});

async function timed(name: string, compute: (shard: ShardInput) => Promise<ShardResult>): Promise<ShardResult> {
  const first = await compute(shards[0]);
  const start = performance.now();
  for (const shard of shards.slice(1)) await compute(shard);
  const seconds = (performance.now() - start) / 1000;
  console.log(`${name}: ${((opts.steps * opts.batch) / seconds).toFixed(1)} images/s (${opts.steps} shards of ${opts.batch}, ${(seconds / opts.steps).toFixed(2)} s each)`);
  return first;
}

const replica = new Replica(spec, { microBatch, bnGroup });
replica.setParams(params);
const reference = await timed('1 replica (--threads 1)', (shard) => computeShard(replica, shard));
replica.dispose();

const same = (a: ShardResult, b: ShardResult) =>
  a.lossSum === b.lossSum && a.correct === b.correct && Buffer.compare(Buffer.from(a.gradient.buffer, a.gradient.byteOffset, a.gradient.byteLength), Buffer.from(b.gradient.buffer, b.gradient.byteOffset, b.gradient.byteLength)) === 0;
for (let threads = 2; threads <= opts.threads; threads++) {
  const pool = await ReplicaThreadPool.start(threads, 'wasm');
  try {
    const first = await timed(`${threads} threads (--threads ${threads})`, (shard) => pool.compute({ spec, bnGroup, microBatch, params, paramsVersion: 0 }, shard));
    console.log(`  same bits as 1 replica: ${same(first, reference)}`);
  } finally {
    await pool.close();
  }
}
