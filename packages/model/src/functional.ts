import * as tf from '@tensorflow/tfjs';
import type { ModelGraph } from './graph.js';
import type { WeightLayout } from './layout.js';
import { BN_EPSILON } from './spec.js';

/**
 * BatchNorm mode of a forward pass.
 * - 'batch': normalise each group of `groupSize` consecutive examples with that group's own
 *   statistics (training; "ghost" BatchNorm) and report the statistics pooled over the batch.
 *   Fixing the group size for a whole run makes a step's result independent of how its batch
 *   is cut into shards and micro-batches, as long as the cuts fall on group boundaries;
 * - 'running': normalise with the given running statistics (evaluation, inference).
 */
export type BnMode = { kind: 'batch'; groupSize: number } | { kind: 'running'; stats: Float32Array };

export interface ForwardResult {
  logits: tf.Tensor2D;
  /** For 'batch' mode: per BatchNorm layer (layout order), the mean and biased variance over the whole batch. */
  batchStats: { mean: tf.Tensor1D; variance: tf.Tensor1D }[];
}

/**
 * Runs the model graph with plain tfjs ops on the given parameter tensors (layout order).
 * This is the training path: it exposes the BatchNorm batch statistics, which the
 * coordinator turns into the master running statistics, and it avoids ops whose gradients
 * are slow on some backends (tf.batchNorm's gradient tiles). It computes the same function
 * as `createResNetV2`'s LayersModel, which the tests check.
 */
export function forward(
  graph: ModelGraph,
  layout: WeightLayout,
  params: readonly tf.Tensor[],
  x: tf.Tensor4D,
  bn: BnMode,
): ForwardResult {
  if (params.length !== layout.params.length) {
    throw new Error(`forward: ${layout.params.length} parameter tensors expected, got ${params.length}`);
  }
  const byName = new Map<string, tf.Tensor>();
  layout.params.forEach((p, i) => byName.set(p.name, params[i]));
  const param = (layer: string, kind: string) => {
    const t = byName.get(`${layer}/${kind}`);
    if (!t) throw new Error(`forward: no parameter ${layer}/${kind}`);
    return t;
  };
  const bnEntries = new Map(layout.bn.map((b) => [b.layer, b]));
  const groups = bn.kind === 'batch' ? groupCount(x.shape[0], bn.groupSize) : 1;
  const batchStats: ForwardResult['batchStats'] = [];
  const values = new Map<string, tf.Tensor>();
  const get = (name: string) => values.get(name)!;
  // A backend with a fused BatchNorm kernel (@chorus/backend registers one on WASM) runs each
  // training BatchNorm, with the ReLU that alone consumes it, as one kernel forward and one
  // backward. The fused ReLU's node then passes the BatchNorm node's (already rectified) value on.
  const fused = bn.kind === 'batch' && tf.getKernel(FUSED_BATCH_NORM_KERNEL, tf.getBackend()) != null;
  const fusedRelu = fused ? reluOnlyConsumers(graph) : new Set<string>();
  for (const node of graph.nodes) {
    let out: tf.Tensor;
    switch (node.op) {
      case 'input':
        out = x;
        break;
      case 'conv': {
        out = tf.conv2d(get(node.input) as tf.Tensor4D, param(node.name, 'kernel') as tf.Tensor4D, node.strides, 'same');
        if (node.bias) out = tf.add(out, param(node.name, 'bias'));
        break;
      }
      case 'bn': {
        const input = get(node.input);
        const gamma = param(node.name, 'gamma');
        const beta = param(node.name, 'beta');
        let mean: tf.Tensor;
        let variance: tf.Tensor;
        if (fused) {
          out = fusedNormalize(input, gamma, beta, groups, fusedRelu.has(node.name), batchStats);
          break;
        } else if (bn.kind === 'batch') {
          out = groupNormalize(input as tf.Tensor4D, gamma, beta, groups, batchStats);
          break;
        } else {
          const entry = bnEntries.get(node.name)!;
          mean = tf.tensor1d(bn.stats.subarray(entry.meanOffset, entry.meanOffset + entry.channels));
          variance = tf.tensor1d(bn.stats.subarray(entry.varOffset, entry.varOffset + entry.channels));
        }
        const scale = tf.mul(tf.rsqrt(tf.add(variance, BN_EPSILON)), gamma);
        out = tf.add(tf.mul(tf.sub(input, mean), scale), beta);
        break;
      }
      case 'relu':
        out = fusedRelu.has(node.input) ? get(node.input) : tf.relu(get(node.input));
        break;
      case 'add':
        out = tf.add(get(node.inputs[0]), get(node.inputs[1]));
        break;
      case 'maxpool':
        out = tf.maxPool(get(node.input) as tf.Tensor4D, node.size, node.strides, 'same');
        break;
      case 'gap':
        out = tf.mean(get(node.input), [1, 2]);
        break;
      case 'dense':
        out = tf.matMul(get(node.input) as tf.Tensor2D, param(node.name, 'kernel') as tf.Tensor2D);
        if (node.bias) out = tf.add(out, param(node.name, 'bias'));
        break;
    }
    values.set(node.name, out);
  }
  return { logits: get(graph.output) as tf.Tensor2D, batchStats };
}

/** Parameter tensors from the flat array, in layout order. */
export function paramTensors(layout: WeightLayout, flat: Float32Array): tf.Tensor[] {
  if (flat.length !== layout.paramCount) {
    throw new Error(`params: ${layout.paramCount} values expected for this model, got ${flat.length}`);
  }
  return layout.params.map((p) => tf.tensor(flat.subarray(p.offset, p.offset + p.size), p.shape));
}

/** Concatenates tensors (layout order) into one flat Float32Array. */
export async function flattenTensors(layout: WeightLayout, tensors: readonly tf.Tensor[]): Promise<Float32Array> {
  const flat = new Float32Array(layout.paramCount);
  const data = await Promise.all(tensors.map((t) => t.data()));
  layout.params.forEach((p, i) => {
    if (data[i].length !== p.size) throw new Error(`${p.name}: ${p.size} values expected, got ${data[i].length}`);
    flat.set(data[i] as Float32Array, p.offset);
  });
  return flat;
}

/** Number of BatchNorm groups in a batch of n; n must be at most one group or whole groups. */
export function groupCount(n: number, groupSize: number): number {
  if (!Number.isInteger(groupSize) || groupSize < 1) throw new Error(`BatchNorm group size must be a positive integer, got ${groupSize}`);
  if (n <= groupSize) return 1;
  if (n % groupSize !== 0) {
    throw new Error(`a batch of ${n} is not a whole number of BatchNorm groups of ${groupSize}`);
  }
  return n / groupSize;
}

/**
 * BatchNorm with per-group batch statistics. Examples of a group are contiguous, so the
 * input reshapes to [groups, examples x H x W, C] without moving data, and the reduction is a
 * 3-D one (fast on every backend, unlike 5-D transposes).
 */
function groupNormalize(
  input: tf.Tensor4D,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  groups: number,
  batchStats: ForwardResult['batchStats'],
): tf.Tensor {
  const [n, h, w, c] = input.shape;
  const grouped = tf.reshape(input, [groups, (n / groups) * h * w, c]);
  const { mean, variance } = tf.moments(grouped, [1], true);
  const scale = tf.mul(tf.rsqrt(tf.add(variance, BN_EPSILON)), gamma);
  const out = tf.reshape(tf.add(tf.mul(tf.sub(grouped, mean), scale), beta), [n, h, w, c]);
  // Pool the groups' moments into the whole batch's (groups have equal size here).
  const groupMean = tf.reshape(mean, [groups, c]);
  const batchMean = tf.mean(groupMean, 0);
  const batchSquare = tf.mean(tf.add(tf.reshape(variance, [groups, c]), tf.square(groupMean)), 0);
  batchStats.push({ mean: batchMean as tf.Tensor1D, variance: tf.relu(tf.sub(batchSquare, tf.square(batchMean))) as tf.Tensor1D });
  return out;
}

/** Name of the fused BatchNorm kernel (@chorus/backend's wasm/batch-norm.ts documents it). */
export const FUSED_BATCH_NORM_KERNEL = 'ChorusBatchNorm';

/** BatchNorm nodes whose only consumer is a ReLU node: their ReLU can run inside the BatchNorm. */
function reluOnlyConsumers(graph: ModelGraph): Set<string> {
  const consumers = new Map<string, ModelGraph['nodes'][number][]>();
  for (const node of graph.nodes) {
    const inputs = 'inputs' in node ? node.inputs : 'input' in node ? [node.input] : [];
    for (const input of inputs) consumers.set(input, [...(consumers.get(input) ?? []), node]);
  }
  const out = new Set<string>();
  for (const node of graph.nodes) {
    const users = consumers.get(node.name) ?? [];
    if (node.op === 'bn' && node.name !== graph.output && users.length === 1 && users[0].op === 'relu') out.add(node.name);
  }
  return out;
}

/**
 * groupNormalize (and the ReLU after it, if `relu`) as one fused kernel: the same function,
 * the same pooled statistics, with the moments taken in float64 inside the kernel.
 */
function fusedNormalize(
  input: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  groups: number,
  relu: boolean,
  batchStats: ForwardResult['batchStats'],
): tf.Tensor {
  const [out, mean, variance] = tf.engine().runKernel(FUSED_BATCH_NORM_KERNEL, { x: input, gamma, beta }, {
    groups,
    epsilon: BN_EPSILON,
    relu,
  } as unknown as tf.NamedAttrMap) as tf.Tensor[];
  const batchMean = tf.mean(mean, 0);
  const batchSquare = tf.mean(tf.add(variance, tf.square(mean)), 0);
  batchStats.push({ mean: batchMean as tf.Tensor1D, variance: tf.relu(tf.sub(batchSquare, tf.square(batchMean))) as tf.Tensor1D });
  return out;
}
