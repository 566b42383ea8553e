import type { ResNetV2Spec } from '@chorus/model/core';
import type { LrScheduleOptions } from './lr-schedule.js';
import type { OptimizerName } from './optimizer.js';

/**
 * Everything that defines a run's arithmetic, shared by the local trainer and the
 * coordinator so the two cannot drift apart (the local trainer is the reference that
 * distributed runs are checked against).
 */
export interface TrainingConfig {
  spec: ResNetV2Spec;
  batch: number;
  steps: number;
  /** LR at the reference batch of 128 (linear scaling rule). */
  lr: number;
  optimizer: OptimizerName;
  weightDecay: number;
  warmupSteps: number;
  schedule: LrScheduleOptions['kind'];
  /** BatchNorm group ("ghost batch") size. */
  bnGroup: number;
  seed: number;
  augment: boolean;
}

export function scheduleOf(config: TrainingConfig): LrScheduleOptions {
  return {
    baseLr: config.lr,
    batch: config.batch,
    warmupSteps: config.warmupSteps,
    totalSteps: config.steps,
    kind: config.schedule,
  };
}
