#!/usr/bin/env node
import { Command, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { writeFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { CIFAR10 } from '@chorus/data';
import { ensureCifar10, loadCifar10 } from '@chorus/data/node';
import { PRESETS, getPreset } from '@chorus/model';
import { NODE_BACKENDS, describeChoice, selectNodeBackend } from '@chorus/backend/node';
import { trainLocally, type LocalTrainingConfig } from './train-loop.js';
import { defaultMicroBatch } from '@chorus/backend';

const positiveInt = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};
const nonNegativeInt = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
  return n;
};
const positiveNumber = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive number`);
  return n;
};
const nonNegativeNumber = (name: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative number`);
  return n;
};

const program = new Command()
  .name('chorus-train-local')
  .description('Train a ResNet V2 on CIFAR-10 in one process: the reference for distributed training.')
  .addOption(new Option('--preset <name>', 'model preset').choices(Object.keys(PRESETS)).default('resnet20v2'))
  .option('--data <dir>', 'folder with the CIFAR-10 .bin files (downloaded to the cache when omitted)')
  .option('--steps <n>', 'training steps (overrides --epochs)', positiveInt('--steps'))
  .option('--epochs <n>', 'training epochs', positiveNumber('--epochs'), 30)
  .option('--batch <n>', 'global batch size', positiveInt('--batch'), 128)
  .option('--lr <x>', 'learning rate at batch 128 (scaled linearly with --batch)', positiveNumber('--lr'), 0.1)
  .addOption(new Option('--optimizer <name>', 'optimizer').choices(['sgd', 'adam']).default('sgd'))
  .option('--weight-decay <x>', 'L2 weight decay on kernels', nonNegativeNumber('--weight-decay'), 5e-4)
  .option('--warmup <n>', 'linear warm-up steps', nonNegativeInt('--warmup'))
  .addOption(new Option('--schedule <kind>', 'LR schedule after warm-up').choices(['cosine', 'step', 'constant']).default('cosine'))
  .option('--bn-group <n>', 'BatchNorm group (ghost batch) size', positiveInt('--bn-group'), 32)
  .option('--micro-batch <n>', 'most examples per forward/backward pass (default: by backend)', positiveInt('--micro-batch'))
  .addOption(new Option('--backend <name>', 'force a TensorFlow.js backend').choices([...NODE_BACKENDS]))
  .option('--seed <n>', 'seed for weights, data order and augmentation', nonNegativeInt('--seed'), 1)
  .option('--no-augment', 'no random crop and flip')
  .option('--eval-every <n>', 'evaluate on the test set every N steps (0: only at the end)', nonNegativeInt('--eval-every'), 0)
  .option('--eval-examples <n>', 'test examples per evaluation', positiveInt('--eval-examples'), 10_000)
  .option('--report <file>', 'write a JSON summary of the run to this file')
  .showHelpAfterError();

interface CliOptions {
  preset: string;
  data?: string;
  steps?: number;
  epochs: number;
  batch: number;
  lr: number;
  optimizer: 'sgd' | 'adam';
  weightDecay: number;
  warmup?: number;
  schedule: 'cosine' | 'step' | 'constant';
  bnGroup: number;
  microBatch?: number;
  backend?: string;
  seed: number;
  augment: boolean;
  evalEvery: number;
  evalExamples: number;
  report?: string;
}

async function main(): Promise<void> {
  // We choose and report the backend ourselves; tfjs' own 'install tfjs-node' banner would mislead.
  tf.env().set('PROD', true);
  const opts = program.parse().opts<CliOptions>();
  const spec = getPreset(opts.preset);
  const [h, w, c] = spec.inputShape;
  if (h !== CIFAR10.imageSize || w !== CIFAR10.imageSize || c !== CIFAR10.channels || spec.classes !== CIFAR10.classes) {
    throw new Error(`preset ${opts.preset} takes ${h}x${w}x${c} images and ${spec.classes} classes; CIFAR-10 needs 32x32x3 and 10`);
  }
  const backend = await selectNodeBackend({ force: opts.backend });
  console.log(describeChoice(backend));
  const dir = await ensureCifar10({ data: opts.data, progress: true });
  const data = await loadCifar10(dir);
  console.log(`data: ${dir} (${data.train.count} train, ${data.test.count} test images)`);
  const steps = opts.steps ?? Math.ceil((opts.epochs * data.train.count) / opts.batch);
  const config: LocalTrainingConfig = {
    spec,
    steps,
    batch: opts.batch,
    lr: opts.lr,
    optimizer: opts.optimizer,
    weightDecay: opts.weightDecay,
    warmupSteps: opts.warmup ?? Math.min(Math.ceil(steps / 20), 500),
    schedule: opts.schedule,
    bnGroup: opts.bnGroup,
    microBatch: opts.microBatch ?? defaultMicroBatch(backend.tfBackend),
    seed: opts.seed,
    augment: opts.augment,
    evalEvery: opts.evalEvery,
    evalExamples: opts.evalExamples,
  };
  console.log(
    `model: ${opts.preset}; ${steps} steps of batch ${config.batch} (micro-batch ${config.microBatch}, ` +
      `BatchNorm groups of ${config.bnGroup}); ${config.optimizer} lr ${config.lr} @128, ${config.schedule}, ` +
      `warm-up ${config.warmupSteps}`,
  );
  const bar = new cliProgress.SingleBar(
    {
      format: 'train |{bar}| {value}/{total} steps | epoch {epoch} | loss {loss} | acc {acc} | {ips} img/s | eta {eta_formatted}',
      noTTYOutput: true,
      notTTYSchedule: 10_000,
      hideCursor: true,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(steps, 0, { epoch: 0, loss: '-', acc: '-', ips: '-' });
  let smoothLoss = NaN;
  let smoothAcc = NaN;
  const result = await trainLocally(config, data, {
    onStep(r) {
      smoothLoss = Number.isNaN(smoothLoss) ? r.loss : 0.9 * smoothLoss + 0.1 * r.loss;
      smoothAcc = Number.isNaN(smoothAcc) ? r.accuracy : 0.9 * smoothAcc + 0.1 * r.accuracy;
      bar.update(r.step, {
        epoch: r.epoch,
        loss: smoothLoss.toFixed(3),
        acc: (100 * smoothAcc).toFixed(1) + '%',
        ips: r.imagesPerSecond.toFixed(1),
      });
    },
    onEval(r) {
      if (r.step < steps) bar.stop();
      console.log(`eval @ step ${r.step}: test accuracy ${(100 * r.accuracy).toFixed(2)}% (loss ${r.loss.toFixed(3)}, ${r.count} images)`);
      if (r.step < steps) bar.start(steps, r.step);
    },
  }).finally(() => bar.stop());
  const minutes = result.seconds / 60;
  console.log(
    `done: ${steps} steps in ${minutes.toFixed(1)} min; test accuracy ${(100 * result.finalEval.accuracy).toFixed(2)}% ` +
      `on ${result.finalEval.count} images (chance: ${(100 / CIFAR10.classes).toFixed(0)}%)`,
  );
  if (opts.report) {
    const summary = {
      preset: opts.preset,
      backend: backend.name,
      device: backend.device,
      steps,
      batch: config.batch,
      microBatch: config.microBatch,
      bnGroup: config.bnGroup,
      lr: config.lr,
      optimizer: config.optimizer,
      schedule: config.schedule,
      seed: config.seed,
      minutes,
      testAccuracy: result.finalEval.accuracy,
      testLoss: result.finalEval.loss,
      evalExamples: result.finalEval.count,
    };
    await writeFile(opts.report, JSON.stringify(summary, null, 2) + '\n');
  }
}

main().catch((error: unknown) => {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
