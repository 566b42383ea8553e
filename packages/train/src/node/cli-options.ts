import { InvalidArgumentError, Option, type Command } from 'commander';
import { PRESETS, getPreset } from '@chorus/model/core';
import type { TrainingConfig } from '../training-config.js';

/** Parses an integer option of at least `min`, with a message that names the option. */
export const intOption = (name: string, min: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new InvalidArgumentError(min === 1 ? `${name} must be a positive integer` : min === 0 ? `${name} must be a non-negative integer` : `${name} must be an integer >= ${min}`);
  }
  return n;
};

/** Parses a number option above (strict) or from `min`. */
export const numberOption = (name: string, min: number, strict: boolean) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || (strict && n === min)) {
    throw new InvalidArgumentError(strict && min === 0 ? `${name} must be a positive number` : `${name} must be a number ${strict ? '>' : '>='} ${min}`);
  }
  return n;
};

/** What addTrainingOptions adds to a command's parsed options. */
export interface TrainingCliOptions {
  preset: string;
  data?: string;
  batch: number;
  lr: number;
  optimizer: 'sgd' | 'adam';
  weightDecay: number;
  warmup?: number;
  schedule: 'cosine' | 'step' | 'constant';
  steps?: number;
  epochs: number;
  bnGroup: number;
  seed: number;
  augment: boolean;
  evalEvery: number;
  evalExamples: number;
}

/**
 * The options that define a training run, shared by the coordinator and the local trainer so
 * the reference trainer and distributed runs are configured the same way.
 */
export function addTrainingOptions(command: Command): Command {
  return command
    .option('--data <dir>', 'folder with the CIFAR-10 .bin files (downloaded to the cache when omitted)')
    .addOption(new Option('--preset <name>', 'model preset').choices(Object.keys(PRESETS)).default('resnet20v2'))
    .option('--batch <n>', 'global batch size', intOption('--batch', 1), 128)
    .option('--lr <x>', 'learning rate at batch 128 (scaled linearly with --batch)', numberOption('--lr', 0, true), 0.1)
    .addOption(new Option('--optimizer <name>', 'optimizer').choices(['sgd', 'adam']).default('sgd'))
    .option('--weight-decay <x>', 'weight decay on conv and dense kernels', numberOption('--weight-decay', 0, false), 5e-4)
    .option('--warmup <n>', 'linear warm-up steps (default: 5% of the steps, at most 500)', intOption('--warmup', 0))
    .addOption(new Option('--schedule <kind>', 'LR schedule after warm-up').choices(['cosine', 'step', 'constant']).default('cosine'))
    .option('--steps <n>', 'training steps (overrides --epochs)', intOption('--steps', 1))
    .option('--epochs <n>', 'training epochs', numberOption('--epochs', 0, true), 30)
    .option('--bn-group <n>', 'BatchNorm group (ghost batch) size; batches are cut only on its multiples', intOption('--bn-group', 1), 32)
    .option('--seed <n>', 'seed for weights, data order and augmentation', intOption('--seed', 0), 1)
    .option('--no-augment', 'no random crop and flip')
    .option('--eval-every <n>', 'evaluate on the test set every N steps (0: only at the end)', intOption('--eval-every', 0), 0)
    .option('--eval-examples <n>', 'test examples per evaluation', intOption('--eval-examples', 1), 10_000);
}

/** The run those options describe, for a training set of `datasetSize` examples. */
export function trainingConfigFromCli(opts: TrainingCliOptions, datasetSize: number): TrainingConfig {
  const spec = getPreset(opts.preset);
  const [h, w, c] = spec.inputShape;
  if (h !== 32 || w !== 32 || c !== 3 || spec.classes !== 10) {
    throw new Error(`preset ${opts.preset} takes ${h}x${w}x${c} images and ${spec.classes} classes; CIFAR-10 needs 32x32x3 and 10`);
  }
  const steps = opts.steps ?? Math.ceil((opts.epochs * datasetSize) / opts.batch);
  return {
    spec,
    batch: opts.batch,
    steps,
    lr: opts.lr,
    optimizer: opts.optimizer,
    weightDecay: opts.weightDecay,
    warmupSteps: opts.warmup ?? Math.min(Math.ceil(steps / 20), 500),
    schedule: opts.schedule,
    bnGroup: opts.bnGroup,
    seed: opts.seed,
    augment: opts.augment,
  };
}
