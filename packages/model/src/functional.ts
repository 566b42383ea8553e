import * as tf from '@tensorflow/tfjs';
import type { ModelGraph } from './graph.js';
import type { WeightLayout } from './layout.js';
import { BN_EPSILON } from './layers-model.js';

/**
 * BatchNorm mode of a forward pass.
 * - 'batch': normalise with the batch's own statistics (training) and report them;
 * - 'running': normalise with the given running statistics (evaluation, inference).
 */
export type BnMode = { kind: 'batch' } | { kind: 'running'; stats: Float32Array };

export interface ForwardResult {
  logits: tf.Tensor2D;
  /** For 'batch' mode: per BatchNorm layer (layout order), the batch mean and biased variance. */
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
  const batchStats: ForwardResult['batchStats'] = [];
  const values = new Map<string, tf.Tensor>();
  const get = (name: string) => values.get(name)!;
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
        if (bn.kind === 'batch') {
          const m = tf.moments(input, [0, 1, 2]);
          mean = m.mean;
          variance = m.variance;
          batchStats.push({ mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D });
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
        out = tf.relu(get(node.input));
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
