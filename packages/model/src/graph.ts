import { resolveStacks, type ResNetV2Spec } from './spec.js';

/**
 * A ResNet V2 as a small op graph. It is the one description of the architecture: the
 * Keras-style LayersModel and the functional trainer are both built from it, so they cannot
 * drift apart. Nodes are in topological order; `input` names the node whose output is used.
 */
export type GraphNode =
  | { op: 'input'; name: string; shape: readonly [number, number, number] }
  | {
      op: 'conv';
      name: string;
      input: string;
      filters: number;
      kernelSize: number;
      strides: number;
      inChannels: number;
      bias: boolean;
    }
  | { op: 'bn'; name: string; input: string; channels: number }
  | { op: 'relu'; name: string; input: string }
  | { op: 'add'; name: string; inputs: readonly [string, string] }
  | { op: 'maxpool'; name: string; input: string; size: number; strides: number }
  | { op: 'gap'; name: string; input: string }
  | { op: 'dense'; name: string; input: string; units: number; inFeatures: number; bias: boolean };

export interface ModelGraph {
  spec: ResNetV2Spec;
  nodes: GraphNode[];
  /** Name of the node whose output is the logits (softmax is applied on top). */
  output: string;
}

/** Keras' "same" padding: output = ceil(input / stride). */
function sameOut(size: number, strides: number): number {
  return Math.ceil(size / strides);
}

export function buildGraph(spec: ResNetV2Spec): ModelGraph {
  const stacks = resolveStacks(spec);
  const nodes: GraphNode[] = [];
  let [h, w] = spec.inputShape;
  let channels = spec.inputShape[2];
  const push = <T extends GraphNode>(node: T): string => {
    nodes.push(node);
    return node.name;
  };
  const conv = (name: string, input: string, filters: number, kernelSize: number, strides: number): string => {
    const id = push({ op: 'conv', name, input, filters, kernelSize, strides, inChannels: channels, bias: spec.bias });
    channels = filters;
    return id;
  };

  let x = push({ op: 'input', name: 'input', shape: spec.inputShape });
  // Stem: conv -> BN -> ReLU, which also serves as the first unit's pre-activation.
  x = conv('stem_conv', x, spec.stem.filters, spec.stem.kernelSize, spec.stem.strides);
  h = sameOut(h, spec.stem.strides);
  w = sameOut(w, spec.stem.strides);
  x = push({ op: 'bn', name: 'stem_bn', input: x, channels });
  x = push({ op: 'relu', name: 'stem_relu', input: x });
  if (spec.stem.pool) {
    x = push({ op: 'maxpool', name: 'stem_pool', input: x, size: spec.stem.pool.size, strides: spec.stem.pool.strides });
    h = sameOut(h, spec.stem.pool.strides);
    w = sameOut(w, spec.stem.pool.strides);
  }

  stacks.forEach((stack, s) => {
    const stackInput = x;
    const stackInChannels = channels;
    for (let u = 0; u < stack.units; u++) {
      const prefix = `s${s + 1}u${u + 1}`;
      const unitInput = x;
      const unitInChannels = channels;
      const first = u === 0;
      const strides = first ? stack.strides : 1;
      // Three residual layers, each BN -> ReLU -> conv (full pre-activation). The very first
      // layer of the network's first unit skips BN/ReLU: the stem has just done them.
      const layer = (l: number, input: string, filters: number, kernelSize: number, layerStrides: number) => {
        let y = input;
        if (!(s === 0 && u === 0 && l === 1)) {
          y = push({ op: 'bn', name: `${prefix}_l${l}_bn`, input: y, channels });
          y = push({ op: 'relu', name: `${prefix}_l${l}_relu`, input: y });
        }
        return conv(`${prefix}_l${l}_conv`, y, filters, kernelSize, layerStrides);
      };
      let y = layer(1, unitInput, stack.width, 1, strides);
      y = layer(2, y, stack.width, spec.kernelSize, 1);
      y = layer(3, y, stack.filters, 1, 1);
      // Every stack's first unit projects its shortcut (1x1, same stride); the rest are identity.
      let shortcut = unitInput;
      if (first) {
        channels = unitInChannels;
        shortcut = conv(`${prefix}_proj`, unitInput, stack.filters, 1, strides);
      }
      x = push({ op: 'add', name: `${prefix}_add`, inputs: [shortcut, y] });
      channels = stack.filters;
      if (first) {
        h = sameOut(h, strides);
        w = sameOut(w, strides);
      }
    }
    if (spec.stackShortcut) {
      let bridge = stackInput;
      if (stack.strides !== 1 || stackInChannels !== stack.filters) {
        const saved = channels;
        channels = stackInChannels;
        bridge = conv(`s${s + 1}_bridge`, stackInput, stack.filters, 1, stack.strides);
        channels = saved;
      }
      x = push({ op: 'add', name: `s${s + 1}_bridge_add`, inputs: [bridge, x] });
    }
  });

  // Head: BN -> ReLU -> global average pool -> dense (softmax is applied by the consumer).
  x = push({ op: 'bn', name: 'head_bn', input: x, channels });
  x = push({ op: 'relu', name: 'head_relu', input: x });
  x = push({ op: 'gap', name: 'head_gap', input: x });
  x = push({ op: 'dense', name: 'head_dense', input: x, units: spec.classes, inFeatures: channels, bias: true });
  return { spec, nodes, output: x };
}
