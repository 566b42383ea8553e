import { EpochSampler, hash32 } from '@chorus/data';
import { BN_MOMENTUM, initialBnStats, initialParams, type WeightLayout } from '@chorus/model/core';
import { updateRunningStats } from './bn-stats.js';
import { learningRate, type LrScheduleOptions } from './lr-schedule.js';
import { createOptimizer, optimizerStateBytes, type Optimizer, type OptimizerState } from './optimizer.js';
import { residentMasterArrays } from './simd/master-kernels.js';
import { scheduleOf, type TrainingConfig } from './training-config.js';

/** Everything an exact resume needs: restoring it continues the run bit for bit. */
export interface MasterSnapshot {
  /** Completed steps, which is also the weights version. */
  step: number;
  params: Float32Array;
  bnStats: Float32Array;
  optimizer: OptimizerState;
}

/** The global batch of one step. */
export interface StepBatch {
  /** Dataset indices of the batch's examples, in batch order. */
  indices: Int32Array;
  /** Seed of the step's augmentation; null when the run does not augment. */
  augmentSeed: number | null;
}

/**
 * The master side of a step, written once so that the coordinator and the single-process
 * reference trainer cannot drift apart: which examples and augmentation a step uses, its
 * learning rate, and how the reduced gradient and BatchNorm moments update the weights,
 * optimizer state and running statistics.
 */
export class MasterState {
  readonly config: TrainingConfig;
  readonly layout: WeightLayout;
  private readonly optimizer: Optimizer;
  private readonly sampler: EpochSampler;
  private readonly schedule: LrScheduleOptions;
  private completed = 0;
  // Never replaced, only written in place, so a reference taken from params/bnStats stays current.
  private readonly weights: Float32Array;
  private readonly running: Float32Array;
  private readonly meanGradient: Float32Array;

  constructor(config: TrainingConfig, layout: WeightLayout, datasetSize: number) {
    this.config = config;
    this.layout = layout;
    // The weights, a gradient array and the optimizer's state resident together in the SGD
    // kernel's memory, which then steps them where they lie: no 2.3 MB copies in and out.
    const P = layout.paramCount;
    const arrays = residentMasterArrays([4 * P, 4 * P, ...optimizerStateBytes(config.optimizer, P)], 4 * P);
    this.weights = arrays.f32(P);
    this.weights.set(initialParams(layout, config.seed));
    this.meanGradient = arrays.f32(P);
    this.running = initialBnStats(layout);
    this.optimizer = createOptimizer(config.optimizer, layout, { weightDecay: config.weightDecay }, arrays);
    this.sampler = new EpochSampler({ datasetSize, globalBatch: config.batch, seed: config.seed });
    this.schedule = scheduleOf(config);
  }

  /** Completed steps, which is also the weights version. */
  get step(): number {
    return this.completed;
  }

  /** The master weights, updated in place by apply() and restore(): read them, never write them. */
  get params(): Float32Array {
    return this.weights;
  }

  /**
   * An array for the step's mean gradient, beside the weights: one computed into it (the
   * coordinator's reduction does) reaches the optimizer with no copy. apply() takes any array.
   */
  get gradientBuffer(): Float32Array {
    return this.meanGradient;
  }

  /** The BatchNorm running statistics, updated in place like params: read them, never write them. */
  get bnStats(): Float32Array {
    return this.running;
  }

  batch(step = this.completed): StepBatch {
    return {
      indices: this.sampler.indicesForStep(step),
      augmentSeed: this.config.augment ? hash32(this.config.seed, step) : null,
    };
  }

  learningRate(step = this.completed): number {
    return learningRate(this.schedule, step);
  }

  /** The epoch of the step's first example. */
  epochOf(step: number): number {
    return this.sampler.epochOf(step);
  }

  /**
   * Completes the current step: `meanGradient` is the gradient averaged over the global batch,
   * `bnMoments` the pooled BatchNorm moments of the whole batch. Returns the learning rate used.
   */
  apply(meanGradient: Float32Array, bnMoments: Float32Array): number {
    // Both checked before either update, so a refused call leaves the state untouched.
    checkLength('gradient', meanGradient, this.layout.paramCount);
    checkLength('BatchNorm moments', bnMoments, this.layout.bnStatCount);
    const lr = this.learningRate(this.completed);
    // This order (optimizer, then running statistics) is the arithmetic checkpoints and the tests pin.
    this.optimizer.apply(this.weights, meanGradient, lr);
    updateRunningStats(this.running, bnMoments, BN_MOMENTUM);
    this.completed++;
    return lr;
  }

  /** Copies, so a checkpoint being written is not changed by the steps that follow. */
  snapshot(): MasterSnapshot {
    return {
      step: this.completed,
      params: this.weights.slice(),
      bnStats: this.running.slice(),
      optimizer: this.optimizer.state(),
    };
  }

  /** Continues from a snapshot; everything is checked before anything changes. */
  restore(snapshot: MasterSnapshot): void {
    const { step, params, bnStats, optimizer } = snapshot;
    if (!Number.isSafeInteger(step) || step < 0) {
      throw new Error(`master state: step must be a non-negative integer, got ${step}`);
    }
    checkLength('params', params, this.layout.paramCount);
    checkLength('BatchNorm statistics', bnStats, this.layout.bnStatCount);
    if (optimizer.kind !== this.optimizer.kind) {
      throw new Error(`master state: the snapshot's optimizer is ${optimizer.kind}, this run uses ${this.optimizer.kind}`);
    }
    // load() validates the slots and throws before it changes anything.
    this.optimizer.load(optimizer);
    this.weights.set(params);
    this.running.set(bnStats);
    this.completed = step;
  }
}

function checkLength(what: string, values: Float32Array, expected: number): void {
  if (!(values instanceof Float32Array) || values.length !== expected) {
    const got = values instanceof Float32Array ? `${values.length}` : typeof values;
    throw new Error(`master state: ${what} must be a Float32Array of ${expected} values, got ${got}`);
  }
}
