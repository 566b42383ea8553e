import * as tf from '@tensorflow/tfjs';
import { buildGraph, type ModelGraph } from './graph.js';
import type { ResNetV2Spec } from './spec.js';
import type { WeightLayout } from './layout.js';
import { BN_EPSILON, BN_MOMENTUM } from './spec.js';

/** Per-channel standardisation, in the units of the model's input (e.g. 0..255 pixels). */
export interface InputNormalization {
  mean: readonly number[];
  std: readonly number[];
}

/** Name of the layer that createResNetV2 puts first when asked to normalise its input. */
export const INPUT_NORMALIZATION_LAYER = 'input_normalization';

/**
 * Builds the ResNet V2 as a tf.LayersModel (for export, inspection and inference).
 * With `inputNormalization`, a fixed (non-trainable) 1x1 depthwise convolution computing
 * (x - mean) / std per channel comes first, so the model takes raw pixels: a standard layer,
 * so any TensorFlow.js or Keras loader runs it without Chorus code.
 */
export function createResNetV2(
  spec: ResNetV2Spec,
  graph: ModelGraph = buildGraph(spec),
  options: { inputNormalization?: InputNormalization } = {},
): tf.LayersModel {
  const norm = options.inputNormalization;
  const outputs = new Map<string, tf.SymbolicTensor>();
  let input: tf.SymbolicTensor | undefined;
  const get = (name: string) => {
    const t = outputs.get(name);
    if (!t) throw new Error(`graph node '${name}' used before it is defined`);
    return t;
  };
  for (const node of graph.nodes) {
    let out: tf.SymbolicTensor;
    switch (node.op) {
      case 'input':
        input = tf.input({ shape: [...node.shape], name: node.name });
        out = norm
          ? (tf.layers
              .depthwiseConv2d({ name: INPUT_NORMALIZATION_LAYER, kernelSize: 1, depthMultiplier: 1, useBias: true, trainable: false })
              .apply(input) as tf.SymbolicTensor)
          : input;
        break;
      case 'conv':
        out = tf.layers
          .conv2d({
            name: node.name,
            filters: node.filters,
            kernelSize: node.kernelSize,
            strides: node.strides,
            padding: 'same',
            useBias: node.bias,
            kernelInitializer: 'heNormal',
          })
          .apply(get(node.input)) as tf.SymbolicTensor;
        break;
      case 'bn':
        out = tf.layers
          .batchNormalization({ name: node.name, epsilon: BN_EPSILON, momentum: BN_MOMENTUM })
          .apply(get(node.input)) as tf.SymbolicTensor;
        break;
      case 'relu':
        out = tf.layers.activation({ name: node.name, activation: 'relu' }).apply(get(node.input)) as tf.SymbolicTensor;
        break;
      case 'add':
        out = tf.layers.add({ name: node.name }).apply(node.inputs.map(get)) as tf.SymbolicTensor;
        break;
      case 'maxpool':
        out = tf.layers
          .maxPooling2d({ name: node.name, poolSize: node.size, strides: node.strides, padding: 'same' })
          .apply(get(node.input)) as tf.SymbolicTensor;
        break;
      case 'gap':
        out = tf.layers.globalAveragePooling2d({ name: node.name }).apply(get(node.input)) as tf.SymbolicTensor;
        break;
      case 'dense':
        out = tf.layers
          .dense({
            name: node.name,
            units: node.units,
            useBias: node.bias,
            activation: 'softmax',
            kernelInitializer: 'heNormal',
          })
          .apply(get(node.input)) as tf.SymbolicTensor;
        break;
    }
    outputs.set(node.name, out);
  }
  if (!input) throw new Error('graph has no input node');
  const model = tf.model({ inputs: input, outputs: get(graph.output), name: 'resnet_v2' });
  if (norm) {
    const channels = input.shape[3] ?? 0;
    if (norm.mean.length !== channels || norm.std.length !== channels || norm.std.some((s) => !(s > 0))) {
      throw new Error(`inputNormalization: ${channels} channel means and positive stds expected`);
    }
    tf.tidy(() =>
      model.getLayer(INPUT_NORMALIZATION_LAYER).setWeights([
        tf.tensor4d(norm.std.map((s) => 1 / s), [1, 1, channels, 1]),
        tf.tensor1d(norm.mean.map((m, i) => -m / norm.std[i])),
      ]),
    );
  }
  return model;
}

function layerWeights(model: tf.LayersModel, layer: string): tf.LayerVariable[] {
  return model.getLayer(layer).weights;
}

/** Copies a LayersModel's weights into the flat arrays, in the layout's order. */
export function readLayersModelWeights(
  model: tf.LayersModel,
  layout: WeightLayout,
): { params: Float32Array; bnStats: Float32Array } {
  const params = new Float32Array(layout.paramCount);
  const bnStats = new Float32Array(layout.bnStatCount);
  for (const p of layout.params) {
    const v = findWeight(model, p.layer, p.kind);
    params.set(v.read().dataSync() as Float32Array, p.offset);
  }
  for (const b of layout.bn) {
    bnStats.set(findWeight(model, b.layer, 'moving_mean').read().dataSync() as Float32Array, b.meanOffset);
    bnStats.set(findWeight(model, b.layer, 'moving_variance').read().dataSync() as Float32Array, b.varOffset);
  }
  return { params, bnStats };
}

/** Sets a LayersModel's weights from the flat arrays. */
export function writeLayersModelWeights(
  model: tf.LayersModel,
  layout: WeightLayout,
  params: Float32Array,
  bnStats: Float32Array,
): void {
  checkLength('params', params, layout.paramCount);
  checkLength('bnStats', bnStats, layout.bnStatCount);
  tf.tidy(() => {
    for (const p of layout.params) {
      findWeight(model, p.layer, p.kind).write(tf.tensor(params.subarray(p.offset, p.offset + p.size), p.shape));
    }
    for (const b of layout.bn) {
      findWeight(model, b.layer, 'moving_mean').write(tf.tensor1d(bnStats.subarray(b.meanOffset, b.meanOffset + b.channels)));
      findWeight(model, b.layer, 'moving_variance').write(tf.tensor1d(bnStats.subarray(b.varOffset, b.varOffset + b.channels)));
    }
  });
}

export function checkLength(what: string, array: ArrayLike<number>, expected: number): void {
  if (array.length !== expected) {
    throw new Error(`${what}: ${expected} values expected for this model, got ${array.length}`);
  }
}

function findWeight(model: tf.LayersModel, layer: string, kind: string): tf.LayerVariable {
  // tfjs names weights "<layer>/<kind>" (with a numeric suffix on name clashes).
  const weight = layerWeights(model, layer).find((w) => w.name.split('/').pop()?.replace(/_\d+$/, '') === kind);
  if (!weight) throw new Error(`layer '${layer}' has no weight '${kind}'`);
  return weight;
}
