import type { ModelGraph } from './graph.js';

export type ParamKind = 'kernel' | 'bias' | 'gamma' | 'beta';

export interface ParamEntry {
  /** `layer/kind`, the same string on every platform. */
  name: string;
  layer: string;
  kind: ParamKind;
  shape: number[];
  size: number;
  /** Offset in the flat Float32Array. */
  offset: number;
  /** Weight decay applies to conv and dense kernels only, as in the reference recipes. */
  decay: boolean;
}

export interface BnStatEntry {
  /** Name of the BatchNorm node. */
  layer: string;
  channels: number;
  /** Offsets in the flat running-statistics array: means at meanOffset, variances at varOffset. */
  meanOffset: number;
  varOffset: number;
}

/**
 * The flat view of a model's state: the trainable parameters in one ordered list (this is what
 * crosses the wire as weights and gradients) and the BatchNorm running statistics in another.
 * The order is the graph's node order, so it is identical on every platform and backend.
 */
export interface WeightLayout {
  params: ParamEntry[];
  paramCount: number;
  bn: BnStatEntry[];
  /** Length of the running-statistics array: 2 x total BatchNorm channels (means, then variances). */
  bnStatCount: number;
}

export function weightLayout(graph: ModelGraph): WeightLayout {
  const params: ParamEntry[] = [];
  const bn: BnStatEntry[] = [];
  let offset = 0;
  const add = (layer: string, kind: ParamKind, shape: number[], decay: boolean) => {
    const size = shape.reduce((a, b) => a * b, 1);
    params.push({ name: `${layer}/${kind}`, layer, kind, shape, size, offset, decay });
    offset += size;
  };
  let bnChannels = 0;
  for (const node of graph.nodes) {
    if (node.op === 'conv') {
      add(node.name, 'kernel', [node.kernelSize, node.kernelSize, node.inChannels, node.filters], true);
      if (node.bias) add(node.name, 'bias', [node.filters], false);
    } else if (node.op === 'bn') {
      add(node.name, 'gamma', [node.channels], false);
      add(node.name, 'beta', [node.channels], false);
      bn.push({ layer: node.name, channels: node.channels, meanOffset: 0, varOffset: 0 });
      bnChannels += node.channels;
    } else if (node.op === 'dense') {
      add(node.name, 'kernel', [node.inFeatures, node.units], true);
      if (node.bias) add(node.name, 'bias', [node.units], false);
    }
  }
  // Means first, then variances, so each half is one contiguous block per statistic.
  let at = 0;
  for (const entry of bn) {
    entry.meanOffset = at;
    entry.varOffset = bnChannels + at;
    at += entry.channels;
  }
  return { params, paramCount: offset, bn, bnStatCount: 2 * bnChannels };
}

/** The running statistics of a freshly initialised model: mean 0, variance 1. */
export function initialBnStats(layout: WeightLayout): Float32Array {
  const stats = new Float32Array(layout.bnStatCount);
  stats.fill(1, layout.bnStatCount / 2);
  return stats;
}
