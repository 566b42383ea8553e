#!/usr/bin/env node
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import * as tf from '@tensorflow/tfjs';
import { ensureCifar10, loadCifar10 } from '@chorus/data/node';
import { PRESETS, getPreset } from '@chorus/model';
import { CheckpointStore } from './checkpoint.js';
import { Coordinator } from './coordinator.js';
import { exportLayersModel } from './export.js';
import { createLogger } from './logger.js';
import { createMetrics } from './metrics.js';
import { DEFAULT_RUN_OPTIONS, type RunConfig } from './run-config.js';
import { ChorusServer } from './server.js';
import { routes as browserRoutes } from './browser-routes.js';
import { composeRoutes, dashboardRoutes } from './dashboard-routes.js';

const int = (name: string, min: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
  return n;
};
const num = (name: string, min: number, strict: boolean) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || (strict && n === min)) {
    throw new InvalidArgumentError(`${name} must be a number ${strict ? '>' : '>='} ${min}`);
  }
  return n;
};

const program = new Command()
  .name('chorus-coordinator')
  .description('Coordinate synchronous data-parallel training of a ResNet V2 on CIFAR-10 across workers.')
  .option('--host <host>', 'address to listen on (0.0.0.0 to accept workers from other machines)', '127.0.0.1')
  .option('--port <n>', 'port to listen on (0: any free port)', int('--port', 0), 8080)
  .option('--data <dir>', 'folder with the CIFAR-10 .bin files (downloaded to the cache when omitted)')
  .addOption(new Option('--preset <name>', 'model preset').choices(Object.keys(PRESETS)).default('resnet20v2'))
  .option('--batch <n>', 'global batch size', int('--batch', 1), 128)
  .option('--lr <x>', 'learning rate at batch 128 (scaled linearly with --batch)', num('--lr', 0, true), 0.1)
  .addOption(new Option('--optimizer <name>', 'optimizer').choices(['sgd', 'adam']).default('sgd'))
  .option('--weight-decay <x>', 'weight decay on kernels', num('--weight-decay', 0, false), 5e-4)
  .option('--warmup <n>', 'linear warm-up steps', int('--warmup', 0))
  .addOption(new Option('--schedule <kind>', 'LR schedule after warm-up').choices(['cosine', 'step', 'constant']).default('cosine'))
  .option('--steps <n>', 'training steps (overrides --epochs)', int('--steps', 1))
  .option('--epochs <n>', 'training epochs', num('--epochs', 0, true), 30)
  .option('--bn-group <n>', 'BatchNorm group (ghost batch) size; shards are cut on its multiples', int('--bn-group', 1), 32)
  .option('--seed <n>', 'seed for weights, data order and augmentation', int('--seed', 0), 1)
  .option('--no-augment', 'no random crop and flip')
  .option('--min-workers <n>', 'workers to wait for before the first step', int('--min-workers', 1), 1)
  .option('--eval-every <n>', 'evaluate on the test set every N steps (0: only at the end)', int('--eval-every', 0), 0)
  .option('--eval-examples <n>', 'test examples per evaluation', int('--eval-examples', 1), 10_000)
  .option('--checkpoint-dir <dir>', 'where checkpoints are written (none when omitted)')
  .option('--checkpoint-every <n>', 'checkpoint every N steps', int('--checkpoint-every', 1), 100)
  .option('--resume', 'continue from the newest checkpoint in --checkpoint-dir')
  .option('--export <dir>', 'export the trained model (TensorFlow.js Layers format) here at the end')
  .option('--token <token>', 'join token (a random one is generated and printed when omitted)')
  .option('--heartbeat-timeout <ms>', 'drop a worker silent for this long', int('--heartbeat-timeout', 1000), DEFAULT_RUN_OPTIONS.heartbeatTimeoutMs)
  .option('--local-workers <n>', 'also start N Node workers on this machine', int('--local-workers', 0), 0)
  .option('--worker-backend <name>', 'backend for --local-workers (default: the best that loads)')
  .showHelpAfterError();

interface CliOptions {
  host: string;
  port: number;
  data?: string;
  preset: string;
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
  minWorkers: number;
  evalEvery: number;
  evalExamples: number;
  checkpointDir?: string;
  checkpointEvery: number;
  resume?: boolean;
  export?: string;
  token?: string;
  heartbeatTimeout: number;
  localWorkers: number;
  workerBackend?: string;
}

function startLocalWorkers(n: number, url: string, token: string, backend: string | undefined): ChildProcess[] {
  if (n === 0) return [];
  const cli = fileURLToPath(import.meta.resolve('@chorus/node-worker/cli'));
  return Array.from({ length: n }, (_, i) => {
    const args = [cli, url, '--token', token, '--name', `local-${i + 1}`, ...(backend ? ['--backend', backend] : [])];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    return child;
  });
}

async function main(): Promise<void> {
  tf.env().set('PROD', true);
  const opts = program.parse().opts<CliOptions>();
  if (opts.resume && !opts.checkpointDir) throw new Error('--resume needs --checkpoint-dir');
  const log = createLogger();
  const spec = getPreset(opts.preset);
  const dir = await ensureCifar10({ data: opts.data, progress: true });
  const data = await loadCifar10(dir);
  const steps = opts.steps ?? Math.ceil((opts.epochs * data.train.count) / opts.batch);
  const config: RunConfig = {
    preset: opts.preset,
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
  const token = opts.token ?? randomBytes(12).toString('base64url');
  const metrics = createMetrics({ defaultMetrics: true });
  const checkpoints = opts.checkpointDir
    ? new CheckpointStore(opts.checkpointDir, { log: (m) => log.warn(m) })
    : undefined;
  const coordinator = new Coordinator({
    config,
    options: {
      ...DEFAULT_RUN_OPTIONS,
      minWorkers: opts.minWorkers,
      evalEvery: opts.evalEvery,
      evalExamples: opts.evalExamples,
      checkpointEvery: opts.checkpointEvery,
      heartbeatTimeoutMs: opts.heartbeatTimeout,
    },
    data,
    token,
    log,
    metrics,
    checkpoints,
  });
  if (opts.resume && !(await coordinator.resume())) log.warn('no checkpoint to resume from: starting at step 0');
  const routes = composeRoutes(dashboardRoutes, browserRoutes);
  const server = new ChorusServer({ host: opts.host, port: opts.port, coordinator, metrics, log, routes });
  const { port } = await server.listen();
  const shown = opts.host === '0.0.0.0' || opts.host === '::' ? 'localhost' : opts.host;
  const base = `http://${shown}:${port}`;
  const wsUrl = `ws://${shown}:${port}/ws`;
  console.log(
    [
      `chorus coordinator: ${opts.preset} (${coordinator.layout.paramCount.toLocaleString('en-US')} parameters), batch ${config.batch}, ${steps} steps, from step ${coordinator.step}`,
      `  data:       ${dir}`,
      `  token:      ${token}`,
      `  dashboard:  ${base}/?token=${encodeURIComponent(token)}`,
      `  join (tab): ${base}/join?token=${encodeURIComponent(token)}`,
      `  metrics:    ${base}/metrics`,
      `  worker:     npx chorus-worker ${wsUrl} --token ${token}`,
    ].join('\n'),
  );
  const children = startLocalWorkers(opts.localWorkers, wsUrl, token, opts.workerBackend);
  let shuttingDown = false;
  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info(`received ${signal}: saving state and stopping`);
    coordinator.stop();
    try {
      await coordinator.checkpoint();
    } catch (error) {
      log.error('checkpoint on shutdown failed', { error: (error as Error).message });
    }
    for (const child of children) child.kill('SIGTERM');
    await server.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  await coordinator.run();
  if (shuttingDown) return;
  if (opts.export) {
    const result = await exportLayersModel(opts.export, spec, coordinator.params, coordinator.bnStats);
    log.info('exported the model', { modelJson: result.modelJson });
  }
  for (const child of children) child.kill('SIGTERM');
  await server.close();
}

main().catch((error: unknown) => {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
