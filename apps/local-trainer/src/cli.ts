#!/usr/bin/env node
import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { writeFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { CIFAR10 } from '@chorus/data';
import { ensureCifar10, loadCifar10 } from '@chorus/data/node';
import { addTrainingOptions, intOption, trainingConfigFromCli, type TrainingCliOptions } from '@chorus/train/node';
import { NODE_BACKENDS, describeChoice, selectNodeBackend } from '@chorus/backend/node';
import { trainLocally, type LocalTrainingConfig } from './train-loop.js';
import { defaultMicroBatch } from '@chorus/backend';

const program = addTrainingOptions(
  new Command()
    .name('chorus-train-local')
    .description('Train a ResNet V2 on CIFAR-10 in one process: the reference for distributed training.'),
)
  .option('--micro-batch <n>', 'most examples per forward/backward pass (default: by backend)', intOption('--micro-batch', 1))
  .addOption(new Option('--backend <name>', 'force a TensorFlow.js backend').choices([...NODE_BACKENDS]))
  .option('--report <file>', 'write a JSON summary of the run to this file')
  .showHelpAfterError();

interface CliOptions extends TrainingCliOptions {
  microBatch?: number;
  backend?: string;
  report?: string;
}

async function main(): Promise<void> {
  // We choose and report the backend ourselves; tfjs' own 'install tfjs-node' banner would mislead.
  tf.env().set('PROD', true);
  const opts = program.parse().opts<CliOptions>();
  const backend = await selectNodeBackend({ force: opts.backend });
  console.log(describeChoice(backend));
  const dir = await ensureCifar10({ data: opts.data, progress: true });
  const data = await loadCifar10(dir);
  console.log(`data: ${dir} (${data.train.count} train, ${data.test.count} test images)`);
  const training = trainingConfigFromCli(opts, data.train.count);
  const { steps } = training;
  const config: LocalTrainingConfig = {
    ...training,
    microBatch: opts.microBatch ?? defaultMicroBatch(backend.tfBackend),
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
