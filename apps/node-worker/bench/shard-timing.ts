/**
 * What the threads bench and the side-by-side PyTorch bench share: real CIFAR-10 shards as the
 * coordinator assigns them, the timing of a shard computer over them, and the bit comparison
 * of two results. Bench-only.
 */
import { fileURLToPath } from 'node:url';
import { gatherExamples, type Cifar10Split } from '@chorus/data';
import { loadCifar10 } from '@chorus/data/node';
import type { ShardResult } from '@chorus/protocol';
import type { ShardInput } from '@chorus/worker';

/** Where the tests find CIFAR-10 unless told (CHORUS_CIFAR_DIR, else the shared datasets folder). */
export const defaultCifarDir = fileURLToPath(new URL('../../../../shared/datasets/cifar-10-batches-bin', import.meta.url));

export async function loadTrainSplit(dir?: string): Promise<Cifar10Split> {
  return (await loadCifar10(dir ?? process.env.CHORUS_CIFAR_DIR ?? defaultCifarDir)).train;
}

/** `count` augmented shards of `batch` spread-out training examples, different every shard. */
export function benchShards(train: Cifar10Split, batch: number, count: number): ShardInput[] {
  return Array.from({ length: count }, (_, s) => {
    const indices = Int32Array.from({ length: batch }, (_, i) => (s * batch + i * 37) % train.count);
    const { pixels, labels } = gatherExamples(train, indices);
    return { pixels, labels, indices, augmentSeed: 1000 + s };
  });
}

export interface ShardTiming {
  /** The first (warm-up) shard's result, for the bit comparison. */
  first: ShardResult;
  /** Wall time of each timed shard. */
  ms: number[];
  medianMs: number;
  imagesPerSecond: number;
}

/** Computes the first shard as a warm-up (kernels, caches, a thread's first weights), then times the rest one by one. */
export async function timeShards(shards: ShardInput[], compute: (shard: ShardInput) => Promise<ShardResult>): Promise<ShardTiming> {
  if (shards.length < 2) throw new Error('a warm-up shard and at least one timed shard are needed');
  const first = await compute(shards[0]);
  const ms: number[] = [];
  for (const shard of shards.slice(1)) {
    const start = performance.now();
    await compute(shard);
    ms.push(performance.now() - start);
  }
  const sorted = [...ms].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const medianMs = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { first, ms, medianMs, imagesPerSecond: (shards[0].labels.length * 1000) / medianMs };
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Same loss, accuracy, gradient and BatchNorm moments, bit for bit. */
export function sameBits(a: ShardResult, b: ShardResult): boolean {
  return (
    Object.is(a.lossSum, b.lossSum) &&
    Object.is(a.correct, b.correct) &&
    bytes(a.gradient).equals(bytes(b.gradient)) &&
    bytes(a.bnMoments).equals(bytes(b.bnMoments))
  );
}
