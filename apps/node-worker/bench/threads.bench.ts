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
import { PRESETS, buildGraph, initialParams, weightLayout } from '@chorus/model';
import type { ShardResult } from '@chorus/protocol';
import { Replica } from '@chorus/train';
import { computeShard, type ShardInput } from '@chorus/worker';
import { ReplicaThreadPool } from '../src/threads/pool.js';
import { benchShards, loadTrainSplit, sameBits, timeShards } from './shard-timing.js';

const opts = new Command()
  .option('--steps <n>', 'timed shards per setting (after one warm-up shard)', Number, 3)
  .option('--threads <n>', 'largest thread count', Number, availableParallelism())
  .option('--batch <n>', 'examples per shard', Number, 128)
  .option('--data <dir>', 'CIFAR-10 directory (default: CHORUS_CIFAR_DIR, else ../shared/datasets/cifar-10-batches-bin)')
  .parse()
  .opts<{ steps: number; threads: number; batch: number; data?: string }>();

tf.env().set('PROD', true);
await selectNodeBackend({ force: 'wasm', selfTest: false });
const train = await loadTrainSplit(opts.data);
const spec = PRESETS.resnet20v2;
const layout = weightLayout(buildGraph(spec));
const params = initialParams(layout, 1);
const bnGroup = 32;
const microBatch = 32;
const shards = benchShards(train, opts.batch, opts.steps + 1);

async function timed(name: string, compute: (shard: ShardInput) => Promise<ShardResult>): Promise<ShardResult> {
  const { first, medianMs, imagesPerSecond } = await timeShards(shards, compute);
  console.log(`${name}: ${imagesPerSecond.toFixed(1)} images/s (median of ${opts.steps} shards of ${opts.batch}, ${(medianMs / 1000).toFixed(2)} s each)`);
  return first;
}

const replica = new Replica(spec, { microBatch, bnGroup });
replica.setParams(params);
const reference = await timed('1 replica (--threads 1)', (shard) => computeShard(replica, shard));
replica.dispose();

for (let threads = 2; threads <= opts.threads; threads++) {
  const pool = await ReplicaThreadPool.start(threads, 'wasm');
  try {
    const first = await timed(`${threads} threads (--threads ${threads})`, (shard) => pool.compute({ spec, bnGroup, microBatch, params, paramsVersion: 0 }, shard));
    console.log(`  same bits as 1 replica: ${sameBits(first, reference)}`);
  } finally {
    await pool.close();
  }
}
