import * as tf from '@tensorflow/tfjs';
import { buildGraph, forward, weightLayout, type ModelGraph, type ResNetV2Spec, type WeightLayout } from '@chorus/model';
import type { BnMoments } from './bn-stats.js';

/** What one forward/backward pass over a shard produces. All sums, so shards add up. */
export interface ShardGradient {
  count: number;
  /** Sum over the shard's examples of the gradient of their cross-entropy loss. */
  gradient: Float32Array;
  lossSum: number;
  correct: number;
  /** Pooled BatchNorm moments of the shard (see poolMoments). */
  bn: BnMoments;
}

export interface EvalResult {
  count: number;
  lossSum: number;
  correct: number;
}

export interface ReplicaOptions {
  /**
   * Largest number of examples run through the model at once. A larger shard is split into
   * micro-batches whose gradients are summed (the WASM heap, for one, cannot hold batch 128).
   * It is rounded down to whole BatchNorm groups (at least one).
   */
  microBatch: number;
  /**
   * BatchNorm group ("ghost batch") size: a run-wide constant, so that neither the micro-batch
   * size a device can afford nor the shard it is given changes the result of a step.
   */
  bnGroup: number;
}

/** Micro-batches of a shard of `count` examples, cut only at BatchNorm group boundaries. */
export function microBatchRanges(count: number, microBatch: number, bnGroup: number): [number, number][] {
  const g = bnGroup;
  const size = Math.max(g, Math.floor(microBatch / g) * g);
  const out: [number, number][] = [];
  for (let start = 0; start < count; start += size) {
    const end = Math.min(count, start + size);
    const whole = Math.floor((end - start) / g) * g;
    // A trailing partial group is its own micro-batch (and its own BatchNorm group).
    if (end - start > g && whole < end - start) {
      out.push([start, start + whole], [start + whole, end]);
    } else {
      out.push([start, end]);
    }
  }
  return out;
}

/**
 * Length of the raw sums of a micro-batch (Replica.microBatchSums): the gradient, the loss, the
 * correct count, then per BatchNorm layer n*mean and n*E[x^2] of its channels.
 */
export function shardSumsLength(layout: WeightLayout): number {
  return layout.paramCount + 2 + layout.bnStatCount;
}

/**
 * A shard's result from its raw sums (the read-back of Replica.computeGradients, or the sums of
 * micro-batches added elsewhere in the same order). `sums` is kept: the gradient is a view of it.
 */
export function finishShardSums(layout: WeightLayout, count: number, data: Float32Array): ShardGradient {
  const P = layout.paramCount;
  const half = layout.bnStatCount / 2;
  // The read-back array is ours alone: hand out a view instead of copying 4 bytes per parameter.
  const gradient = data.subarray(0, P);
  const moments = new Float32Array(layout.bnStatCount);
  let at = P + 2;
  for (const entry of layout.bn) {
    for (let c = 0; c < entry.channels; c++) {
      const mean = data[at + c] / count;
      const square = data[at + entry.channels + c] / count;
      moments[entry.meanOffset + c] = mean;
      moments[half + entry.meanOffset + c] = Math.max(0, square - mean * mean);
    }
    at += 2 * entry.channels;
  }
  return { count, gradient, lossSum: data[P], correct: data[P + 1], bn: { count, moments } };
}

/**
 * One copy of the model on the current tfjs backend. It holds no optimizer and no master
 * weights: it computes gradients and evaluations for whatever parameters it is given, which is
 * what both the local trainer and a distributed worker need.
 */
export class Replica {
  readonly graph: ModelGraph;
  readonly layout: WeightLayout;
  private readonly variables: tf.Variable[];
  private readonly imageSize: number;
  private readonly inputShape: readonly [number, number, number];
  microBatch: number;
  readonly bnGroup: number;

  constructor(spec: ResNetV2Spec, options: ReplicaOptions) {
    this.graph = buildGraph(spec);
    this.layout = weightLayout(this.graph);
    this.inputShape = spec.inputShape;
    this.imageSize = spec.inputShape[0] * spec.inputShape[1] * spec.inputShape[2];
    this.variables = tf.tidy(() => this.layout.params.map((p) => tf.variable(tf.zeros(p.shape), true)));
    if (!Number.isInteger(options.microBatch) || options.microBatch < 1) {
      throw new Error(`microBatch must be a positive integer, got ${options.microBatch}`);
    }
    if (!Number.isInteger(options.bnGroup) || options.bnGroup < 1) {
      throw new Error(`bnGroup must be a positive integer, got ${options.bnGroup}`);
    }
    this.microBatch = options.microBatch;
    this.bnGroup = options.bnGroup;
  }

  /** Loads parameters (layout order) into the replica's variables. */
  setParams(flat: Float32Array): void {
    if (flat.length !== this.layout.paramCount) {
      throw new Error(`params: ${this.layout.paramCount} values expected for this model, got ${flat.length}`);
    }
    tf.tidy(() => {
      this.layout.params.forEach((p, i) => {
        this.variables[i].assign(tf.tensor(flat.subarray(p.offset, p.offset + p.size), p.shape));
      });
    });
  }

  private checkShard(images: Float32Array, labels: Uint8Array): number {
    const count = labels.length;
    if (images.length !== count * this.imageSize) {
      throw new Error(`shard: ${count} labels need ${count * this.imageSize} pixel values, got ${images.length}`);
    }
    for (let i = 0; i < count; i++) {
      if (labels[i] >= this.graph.spec.classes) throw new Error(`shard: label ${labels[i]} at ${i} is out of range`);
    }
    return count;
  }

  /** Micro-batches that cut the shard only at BatchNorm group boundaries. */
  chunks(count: number): [number, number][] {
    return microBatchRanges(count, this.microBatch, this.bnGroup);
  }

  private batchTensors(images: Float32Array, labels: Uint8Array, start: number, end: number) {
    const n = end - start;
    const x = tf.tensor4d(images.subarray(start * this.imageSize, end * this.imageSize), [n, ...this.inputShape]);
    const y = tf.oneHot(tf.tensor1d(Int32Array.from(labels.subarray(start, end)), 'int32'), this.graph.spec.classes);
    return { x, y };
  }

  /**
   * Gradient of the summed loss over a shard, with BatchNorm in training mode. Each
   * micro-batch normalises with its own statistics (as each worker does with its shard), and
   * the reported moments are pooled exactly over the whole shard.
   */
  async computeGradients(images: Float32Array, labels: Uint8Array): Promise<ShardGradient> {
    const count = this.checkShard(images, labels);
    if (count === 0) throw new Error('shard: at least one example is needed');
    let gradSum: tf.Tensor[] | null = null;
    let lossSum: tf.Tensor | null = null;
    let correct: tf.Tensor | null = null;
    // Per BN layer: sum of n*mean and of n*(var + mean^2), pooled on the device.
    let momentSums: tf.Tensor[] | null = null;
    for (const [start, end] of this.chunks(count)) {
      // Between micro-batches, let timers and sockets run (heartbeats, progress, messages).
      if (start > 0) await new Promise((resolve) => setTimeout(resolve, 0));
      const step = tf.tidy(() => {
        const { value, ordered, hits, moments, kept } = this.microBatchStep(images, labels, start, end);
        const merged = (prev: tf.Tensor[] | null, next: tf.Tensor[]) => (prev ? next.map((t, i) => tf.add(prev[i], t)) : next);
        const result = {
          grads: merged(gradSum, ordered),
          loss: lossSum ? tf.add(lossSum, value) : value,
          hits: correct ? tf.add(correct, hits) : tf.clone(hits),
          moments: merged(momentSums, momentSums ? moments : moments.map((m) => tf.clone(m))),
        };
        tf.dispose(kept);
        return result;
      });
      tf.dispose([...(gradSum ?? []), ...(momentSums ?? []), lossSum, correct].filter((t): t is tf.Tensor => t !== null));
      gradSum = step.grads;
      lossSum = step.loss;
      correct = step.hits;
      momentSums = step.moments;
    }
    // One read-back of everything: on GPU backends each read is a synchronisation.
    const flat = tf.tidy(() => tf.concat([...gradSum!.map((g) => tf.reshape(g, [-1])), tf.reshape(lossSum!, [1]), tf.reshape(correct!, [1]), ...momentSums!.map((m) => tf.reshape(m, [-1]))]));
    tf.dispose([...gradSum!, ...momentSums!, lossSum!, correct!]);
    const data = (await flat.data()) as Float32Array;
    flat.dispose();
    return finishShardSums(this.layout, count, data);
  }

  /**
   * The raw sums (see shardSumsLength) of one micro-batch [start, end) of a shard, which must
   * not cut a BatchNorm group. Added in micro-batch order with float32 additions they are
   * exactly what computeGradients sums on the device, so a shard's micro-batches can be
   * computed by different replicas (threads) without changing a bit.
   */
  async microBatchSums(images: Float32Array, labels: Uint8Array, start: number, end: number): Promise<Float32Array> {
    const count = this.checkShard(images, labels);
    if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start < end && end <= count)) {
      throw new Error(`micro-batch [${start}, ${end}) is not inside a shard of ${count}`);
    }
    const flat = tf.tidy(() => {
      const { value, ordered, hits, moments, kept } = this.microBatchStep(images, labels, start, end);
      const out = tf.concat([...ordered.map((g) => tf.reshape(g, [-1])), tf.reshape(value, [1]), tf.reshape(hits, [1]), ...moments.map((m) => tf.reshape(m, [-1]))]);
      tf.dispose(kept);
      return out;
    });
    const data = (await flat.data()) as Float32Array;
    flat.dispose();
    return data;
  }

  /**
   * Forward and backward of one micro-batch [start, end), inside the caller's tf.tidy: the loss
   * sum, the gradients in layout order, the correct count and the BatchNorm moment sums (n*mean,
   * n*(var + mean^2) per layer). `kept` are the tensors the caller must dispose once it has used
   * hits and moments (variableGrads frees everything else its function made).
   */
  private microBatchStep(images: Float32Array, labels: Uint8Array, start: number, end: number) {
    const n = end - start;
    const { x, y } = this.batchTensors(images, labels, start, end);
    let kept: tf.Tensor[] = [];
    const { value, grads } = tf.variableGrads(() => {
      const out = forward(this.graph, this.layout, this.variables, x, { kind: 'batch', groupSize: this.bnGroup });
      const hits = tf.sum(tf.cast(tf.equal(tf.argMax(out.logits, 1), tf.argMax(y, 1)), 'float32'));
      const moments = out.batchStats.flatMap(({ mean, variance }) => [tf.mul(mean, n), tf.mul(tf.add(variance, tf.square(mean)), n)]);
      kept = [hits, ...moments].map((t) => tf.keep(t));
      return tf.sum(tf.mul(y, tf.neg(tf.logSoftmax(out.logits)))) as tf.Scalar;
    }, this.variables);
    const [hits, ...moments] = kept;
    return { value, ordered: this.variables.map((v) => grads[v.name]), hits, moments, kept };
  }

  /** Loss and accuracy with BatchNorm in inference mode (running statistics). */
  async evaluate(images: Float32Array, labels: Uint8Array, runningStats: Float32Array): Promise<EvalResult> {
    const count = this.checkShard(images, labels);
    if (runningStats.length !== this.layout.bnStatCount) {
      throw new Error(`running statistics: ${this.layout.bnStatCount} values expected, got ${runningStats.length}`);
    }
    let lossSum = 0;
    let correct = 0;
    for (const [start, end] of this.chunks(count)) {
      const result = tf.tidy(() => {
        const { x, y } = this.batchTensors(images, labels, start, end);
        const { logits } = forward(this.graph, this.layout, this.variables, x, { kind: 'running', stats: runningStats });
        const loss = tf.sum(tf.mul(y, tf.neg(tf.logSoftmax(logits))));
        const hits = tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), tf.argMax(y, 1)), 'float32'));
        return tf.stack([loss, hits]);
      });
      const [l, h] = (await result.data()) as Float32Array;
      result.dispose();
      lossSum += l;
      correct += h;
    }
    return { count, lossSum, correct };
  }

  dispose(): void {
    tf.dispose(this.variables);
  }
}
