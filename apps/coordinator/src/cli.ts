#!/usr/bin/env node
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError, Option } from 'commander';
import { CODEC_NAMES, MAX_LOW_RANK, type CodecName } from '@chorus/protocol';
import { ensureCifar10, loadCifar10 } from '@chorus/data/node';
import { addTrainingOptions, intOption as int, trainingConfigFromCli, type TrainingCliOptions } from '@chorus/train/node';
import { CheckpointStore } from './store/checkpoint.js';
import { Coordinator } from './run/coordinator.js';
import { createLogger } from './ops/logger.js';
import { createMetrics } from './ops/metrics.js';
import { DEFAULT_RUN_OPTIONS, type RunConfig } from './run/run-config.js';
import { ChorusServer } from './http/server.js';
import { createRunProgress } from './ops/progress.js';
import { DEFAULT_ADMISSION_LIMITS } from './http/admission.js';
import { advertisedUrls, insecureRemoteNotice, loadTlsFiles } from './http/tls.js';
import { routes as browserRoutes } from './http/browser-routes.js';
import { composeRoutes, dashboardRoutes } from './http/dashboard-routes.js';

/** A whole rank from 1 to MAX_LOW_RANK, the most a welcome may carry. */
const lowRankOption = (value: string): number => {
  const rank = int('--low-rank', 1)(value);
  if (rank > MAX_LOW_RANK) throw new InvalidArgumentError(`--low-rank must be at most ${MAX_LOW_RANK}`);
  return rank;
};

const program = addTrainingOptions(
  new Command()
    .name('chorus-coordinator')
    .description('Coordinate synchronous data-parallel training of a ResNet V2 on CIFAR-10 across workers.')
    .option('--host <host>', 'address to listen on (0.0.0.0 to accept workers from other machines)', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free port)', int('--port', 0), 8080),
)
  .addOption(
    new Option('--codec <name>', 'gradients up and weight updates down: fp32 (exact), fp16 (half the bytes, for slow links), int8 (a quarter, for Wi-Fi and the internet)')
      .choices([...CODEC_NAMES])
      .default('fp32'),
  )
  .option('--low-rank <rank>', 'send low-rank gradients of this rank (alternating PowerSGD; 1-64): a few percent of the bytes up, in the --codec', lowRankOption)
  .option('--min-workers <n>', 'workers to wait for before the first step', int('--min-workers', 1), 1)
  .option('--checkpoint-dir <dir>', 'where checkpoints are written (none when omitted)')
  .option('--checkpoint-every <n>', 'checkpoint every N steps', int('--checkpoint-every', 1), 100)
  .option('--resume', 'continue from the newest checkpoint in --checkpoint-dir')
  .option('--export <dir>', 'export the trained model (TensorFlow.js Layers format) here at the end')
  .option('--token <token>', 'join token (a random one is generated and printed when omitted)')
  .option('--heartbeat-timeout <ms>', 'drop a worker silent for this long', int('--heartbeat-timeout', 1000), DEFAULT_RUN_OPTIONS.heartbeatTimeoutMs)
  .option('--hello-timeout <ms>', 'close a connection that sends no valid hello within this time', int('--hello-timeout', 100), DEFAULT_ADMISSION_LIMITS.helloTimeoutMs)
  .option('--max-pre-auth-frame <bytes>', 'largest frame accepted before a valid hello', int('--max-pre-auth-frame', 1024), DEFAULT_ADMISSION_LIMITS.preAuthMaxFrameBytes)
  .option('--max-unauthenticated <n>', 'connections without a valid hello yet, at once', int('--max-unauthenticated', 1), DEFAULT_ADMISSION_LIMITS.maxUnauthenticated)
  .option('--max-connections <n>', 'WebSocket connections (workers, pending, dashboards), at once', int('--max-connections', 1), DEFAULT_ADMISSION_LIMITS.maxConnections)
  .option('--auth-failures <n>', 'wrong tokens from one address before it is put on hold (0: never)', int('--auth-failures', 0), DEFAULT_ADMISSION_LIMITS.authFailures)
  .option('--auth-hold <ms>', 'first hold of an address after --auth-failures wrong tokens; doubles each time, up to 5 min', int('--auth-hold', 1), DEFAULT_ADMISSION_LIMITS.authHoldMs)
  .option('--local-workers <n>', 'also start N Node workers on this machine', int('--local-workers', 0), 0)
  .option('--worker-backend <name>', 'backend for --local-workers (default: the best that loads)')
  .option('--tls-cert <file>', 'serve https and wss with this PEM certificate (chain); needs --tls-key. Remote browser tabs need it for WebGPU')
  .option('--tls-key <file>', 'the PEM private key of --tls-cert')
  .showHelpAfterError();

interface CliOptions extends TrainingCliOptions {
  codec: CodecName;
  lowRank?: number;
  host: string;
  port: number;
  minWorkers: number;
  checkpointDir?: string;
  checkpointEvery: number;
  resume?: boolean;
  export?: string;
  token?: string;
  heartbeatTimeout: number;
  helloTimeout: number;
  maxPreAuthFrame: number;
  maxUnauthenticated: number;
  maxConnections: number;
  authFailures: number;
  authHold: number;
  localWorkers: number;
  workerBackend?: string;
  tlsCert?: string;
  tlsKey?: string;
}

function startLocalWorkers(n: number, url: string, token: string, backend: string | undefined, fingerprint: string | undefined, writeLine: (line: string) => void): ChildProcess[] {
  if (n === 0) return [];
  const cli = fileURLToPath(import.meta.resolve('@chorus/node-worker/cli'));
  // The machine's cores are shared among its workers (a worker on wasm trains on --threads cores).
  const threads = ['--threads', String(Math.max(1, Math.floor(availableParallelism() / n)))];
  return Array.from({ length: n }, (_, i) => {
    // Pinning our own certificate works whoever signed it and whatever names it carries.
    const pin = fingerprint ? ['--cert-fingerprint', fingerprint] : [];
    const args = [cli, url, '--token', token, '--name', `local-${i + 1}`, ...(backend ? ['--backend', backend] : []), ...threads, ...pin];
    // Their lines go through the coordinator's writer, so they print above the progress bar.
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [child.stdout!, child.stderr!]) createInterface({ input: stream, crlfDelay: Infinity }).on('line', writeLine);
    return child;
  });
}

async function main(): Promise<void> {
  const opts = program.parse().opts<CliOptions>();
  if (opts.resume && !opts.checkpointDir) throw new Error('--resume needs --checkpoint-dir');
  // Log lines go through whatever prints the progress: straight out until it starts.
  let writeLine = (line: string, level: string): void => {
    (level === 'error' ? process.stderr : process.stdout).write(`${line}\n`);
  };
  const log = createLogger({ write: (line, level) => writeLine(line, level) });
  // Before the dataset download, so a wrong file is reported at once.
  const tls = await loadTlsFiles(opts.tlsCert, opts.tlsKey);
  if (tls && tls.validTo.getTime() < Date.now()) log.warn('the --tls-cert certificate has expired: browsers and workers will refuse it', { validTo: tls.validTo.toISOString() });
  const dir = await ensureCifar10({ data: opts.data, progress: true });
  const data = await loadCifar10(dir);
  // fp32 stays out of the config, so its fingerprint (and every older checkpoint) is unchanged.
  const config: RunConfig = { preset: opts.preset, ...trainingConfigFromCli(opts, data.train.count), ...(opts.codec === 'fp32' ? {} : { codec: opts.codec }), ...(opts.lowRank === undefined ? {} : { lowRank: opts.lowRank }) };
  const { spec, steps } = config;
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
  const server = new ChorusServer({ host: opts.host, port: opts.port, coordinator, metrics, log, routes, tls, limits: {
    helloTimeoutMs: opts.helloTimeout,
    preAuthMaxFrameBytes: opts.maxPreAuthFrame,
    maxUnauthenticated: opts.maxUnauthenticated,
    maxConnections: opts.maxConnections,
    authFailures: opts.authFailures,
    authHoldMs: opts.authHold,
  } });
  const { port } = await server.listen();
  const urls = advertisedUrls({ host: opts.host, port, token, tls });
  console.log(
    [
      `chorus coordinator: ${opts.preset} (${coordinator.layout.paramCount.toLocaleString('en-US')} parameters), batch ${config.batch}, ${steps} steps, from step ${coordinator.step}${opts.codec === 'fp32' ? '' : `, codec ${opts.codec}`}${opts.lowRank === undefined ? '' : `, low rank ${opts.lowRank}`}`,
      `  data:       ${dir}`,
      `  token:      ${token}`,
      `  dashboard:  ${urls.dashboard}`,
      `  join (tab): ${urls.join}`,
      `  metrics:    ${urls.metrics}`,
      `  worker:     ${urls.worker}`,
    ].join('\n'),
  );
  const notice = insecureRemoteNotice(opts.host, tls !== undefined);
  if (notice) log.warn(notice);
  const progress = createRunProgress({ totalSteps: steps, fromStep: coordinator.step });
  writeLine = (line) => {
    progress.writeLine(line);
  };
  coordinator.subscribe((message) => {
    if (message.type === 'step') progress.step(message.step, coordinator.etaSeconds());
  });
  const children = startLocalWorkers(opts.localWorkers, urls.localWs, token, opts.workerBackend, tls?.fingerprint256, (line) => progress.writeLine(line));
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
    progress.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  await coordinator.run();
  if (shuttingDown) return;
  progress.stop();
  if (opts.export) {
    // Only an export needs TensorFlow.js: loaded here, it stays out of the heap of every run
    // (15 MB that each full garbage collection would walk, step after step).
    const [tf, { exportLayersModel }] = await Promise.all([import('@tensorflow/tfjs'), import('./store/export.js')]);
    tf.env().set('PROD', true);
    const lastEval = coordinator.history.evals.at(-1);
    const result = await exportLayersModel(opts.export, spec, coordinator.params, coordinator.bnStats, {
      preset: opts.preset,
      step: coordinator.step,
      ...(lastEval ? { testAccuracy: { accuracy: lastEval.accuracy, examples: lastEval.count, step: lastEval.step } } : {}),
    });
    log.info('exported the model', { modelJson: result.modelJson });
  }
  for (const child of children) child.kill('SIGTERM');
  await server.close();
}

main().catch((error: unknown) => {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
