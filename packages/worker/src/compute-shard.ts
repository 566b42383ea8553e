import type { ResNetV2Spec } from '@chorus/model';
import type { Replica, ShardGradient } from '@chorus/train';
import type { ShardResult } from '@chorus/protocol';
import { shardImages } from './shard-input.js';

/** A shard as `assign` carries it. */
export interface ShardInput {
  /** Raw CIFAR-10 pixels, 3072 per example (channel planes). */
  pixels: Uint8Array;
  labels: Uint8Array;
  /** Dataset indices: with the seed, they fix each example's augmentation. */
  indices: Int32Array;
  /** Negative: no augmentation. */
  augmentSeed: number;
}

/** One shard's result, computed the same way by every worker (and a tab's ?selftest). */
export async function computeShard(replica: Replica, shard: ShardInput, now: () => number = () => performance.now()): Promise<ShardResult> {
  const start = now();
  const images = shardImages(shard.pixels, shard.indices, shard.augmentSeed >= 0 ? shard.augmentSeed : null);
  return toShardResult(await replica.computeGradients(images, shard.labels), now() - start);
}

/** A replica's gradient sums as the wire's ShardResult, with the time they took. */
export function toShardResult(sums: ShardGradient, computeMs: number): ShardResult {
  return { count: sums.count, lossSum: sums.lossSum, correct: sums.correct, computeMs, gradient: sums.gradient, bnMoments: sums.bn.moments };
}

/** What a shard is computed with: the model, the BatchNorm group, and the weights to use. */
export interface ShardModel {
  spec: ResNetV2Spec;
  bnGroup: number;
  microBatch: number;
  /** The weights every shard is computed at until `paramsVersion` changes. */
  params: Float32Array;
  /** Changes whenever `params` (or their contents) change. */
  paramsVersion: number;
}

/**
 * Computes shards somewhere other than the worker's own replica (a Node worker's threads). It
 * must return what computeShard would, bit for bit; the worker's replica still evaluates.
 */
export interface ShardComputer {
  compute(model: ShardModel, shard: ShardInput, now: () => number): Promise<ShardResult>;
  /** Releases what it holds (threads and their WASM memory); called once it has failed. May be called again by its owner. */
  close?(): Promise<void> | void;
}
