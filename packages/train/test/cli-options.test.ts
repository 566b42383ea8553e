import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { PRESETS } from '@chorus/model';
import { addTrainingOptions, trainingConfigFromCli, type TrainingCliOptions } from '../src/node/index.js';

const parse = (args: string[]) =>
  addTrainingOptions(new Command().exitOverride().configureOutput({ writeErr: () => undefined }))
    .parse(args, { from: 'user' })
    .opts<TrainingCliOptions>();

test('defaults describe resnet20v2 for 30 epochs with a 5% warm-up capped at 500 steps', () => {
  const config = trainingConfigFromCli(parse([]), 50_000);
  assert.equal(config.spec, PRESETS.resnet20v2);
  assert.equal(config.steps, Math.ceil((30 * 50_000) / 128));
  assert.equal(config.warmupSteps, 500);
  assert.deepEqual([config.batch, config.lr, config.optimizer, config.weightDecay, config.schedule, config.bnGroup, config.seed, config.augment], [128, 0.1, 'sgd', 5e-4, 'cosine', 32, 1, true]);
  const short = trainingConfigFromCli(parse(['--steps', '40', '--no-augment', '--preset', 'tiny', '--optimizer', 'adam']), 50_000);
  assert.deepEqual([short.steps, short.warmupSteps, short.augment, short.optimizer, short.spec], [40, 2, false, 'adam', PRESETS.tiny]);
});

test('bad values are refused with a message naming the option', () => {
  assert.throws(() => parse(['--batch', '0']), /--batch must be a positive integer/);
  assert.throws(() => parse(['--seed', '-1']), /--seed must be a non-negative integer/);
  assert.throws(() => parse(['--lr', '0']), /--lr must be a positive number/);
  assert.throws(() => parse(['--weight-decay', 'x']), /--weight-decay must be a number >= 0/);
  assert.throws(() => parse(['--preset', 'vgg']), /Allowed choices are resnet20v2/);
});
