import { spawn, type ChildProcess } from 'node:child_process';
import { get as httpsGet } from 'node:https';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ResNetV2Spec } from '@chorus/model';
import { Replica } from '@chorus/train';
import { shardImages } from '@chorus/worker';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const cifarDir = process.env.CHORUS_CIFAR_DIR ?? resolve(repoRoot, '../shared/datasets/cifar-10-batches-bin');
export const coordinatorCli = resolve(repoRoot, 'apps/coordinator/dist/cli.js');
export const workerCli = resolve(repoRoot, 'apps/node-worker/dist/cli.js');

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value as T;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A child process whose output is collected; killed by the test (or at exit as a safety net). */
export class Proc {
  readonly child: ChildProcess;
  output = '';
  readonly exited: Promise<number | null>;

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
    live.add(this);
    void this.exited.then(() => live.delete(this));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * Stops the process and waits for it, within bounds so a `finally` always completes: a
   * stopped (SIGSTOP) process is continued so it can act on the signal, and one that has not
   * exited `graceMs` later is killed.
   */
  async kill(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<number | null> {
    if (!this.running) return this.exited;
    this.child.kill(signal);
    this.child.kill('SIGCONT');
    if (signal !== 'SIGKILL' && (await within(this.exited, graceMs)) === timedOut) this.child.kill('SIGKILL');
    return this.exited;
  }

  /** The exit code, failing (with the process's output) if it has not exited within `timeoutMs`. */
  exit(timeoutMs = 120_000): Promise<number | null> {
    return bounded(this.exited, timeoutMs, () => `the process to exit; its output:\n${this.output.slice(-4000)}`);
  }
}

const timedOut = Symbol('timed out');

/** `promise`'s value, or `timedOut` after `ms` (without keeping the process alive). */
function within<T>(promise: Promise<T>, ms: number): Promise<T | typeof timedOut> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<typeof timedOut>((resolve) => {
    timer = setTimeout(() => resolve(timedOut), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * `promise`, or a failure naming `what` after `ms`: a wait that cannot hang, so the caller's
 * `finally` runs (a test that times out inside an await never reaches it).
 */
export async function bounded<T>(promise: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  const value = await within(promise, ms);
  if (value === timedOut) throw new Error(`timed out after ${ms} ms waiting for ${typeof what === 'string' ? what : what()}`);
  return value;
}

const live = new Set<Proc>();
const killAll = () => {
  for (const p of live) p.child.kill('SIGKILL');
};
// The safety net for a test that timed out in the middle of an await (its `finally` never
// runs): at exit, and when the test runner stops a file that ran past --test-timeout (SIGTERM).
process.on('exit', killAll);
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(signal === 'SIGTERM' ? 143 : 130);
  });
}

export interface CoordinatorProc {
  proc: Proc;
  port: number;
  token: string;
  url: string;
  status(): Promise<Status>;
}

export interface Status {
  step: number;
  paramsHash: string;
  paused: boolean;
  testAccuracy: number | null;
  workers: { id: string; state: string; backend: string; kind: string; shardsDone: number; imagesDone: number; lastShard: number | null }[];
  events: { kind: string; message: string }[];
}

/** GET over https trusting `ca` (global fetch cannot be given a CA in Node 20). */
function getJsonTls(url: string, ca: string | Buffer | undefined): Promise<unknown> {
  return new Promise((resolve, reject) => {
    httpsGet(url, { ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch (error) {
          reject(error);
        }
      });
    }).on('error', reject);
  });
}

/**
 * `options.ca`: the CA to trust for a coordinator started with --tls-cert (its status is then
 * fetched over https); `options.env`: extra environment for the coordinator.
 */
export async function startCoordinator(args: string[], options: { ca?: string | Buffer; env?: NodeJS.ProcessEnv } = {}): Promise<CoordinatorProc> {
  const proc = new Proc([coordinatorCli, '--host', '127.0.0.1', '--port', '0', '--data', cifarDir, ...args], options.env);
  // Not yet the caller's to stop: a coordinator that never prints its banner is stopped here.
  const banner = await waitFor('the coordinator banner', () => {
    if (proc.child.exitCode !== null) throw new Error(`coordinator exited:\n${proc.output}`);
    const m = /dashboard:\s+https?:\/\/127\.0\.0\.1:(\d+)\/[\s\S]*?token:\s+(\S+)|token:\s+(\S+)[\s\S]*?dashboard:\s+https?:\/\/127\.0\.0\.1:(\d+)\//.exec(proc.output);
    return m ? { port: Number(m[1] ?? m[4]), token: m[2] ?? m[3], tls: /dashboard:\s+https:/.test(proc.output) } : null;
  }).catch(async (error: unknown) => {
    await proc.kill();
    throw error;
  });
  const base = `${banner.tls ? 'https' : 'http'}://127.0.0.1:${banner.port}`;
  return {
    proc,
    port: banner.port,
    token: banner.token,
    url: `${banner.tls ? 'wss' : 'ws'}://127.0.0.1:${banner.port}/ws`,
    status: async () =>
      (banner.tls ? await getJsonTls(`${base}/api/status`, options.ca) : await (await fetch(`${base}/api/status`)).json()) as Status,
  };
}

/**
 * One replica thread unless `extra` says otherwise: the tests run several workers on one small
 * machine, where each taking every core would only make them fight over the CPU (and skew the
 * speeds the load-balancing test measures).
 */
export function startWorker(url: string, token: string, extra: string[] = []): Proc {
  const threads = extra.includes('--threads') ? [] : ['--threads', '1'];
  return new Proc([workerCli, url, '--token', token, '--backend', 'wasm', ...threads, ...extra]);
}

/**
 * max |a - b| / max |b|: how far distributed weights are from the reference's. Shards are cut
 * on BatchNorm group boundaries, so only the float32 summation order differs (about 1e-7
 * relative per addition); over a few steps that stays far below EQUIVALENCE_TOLERANCE, while a
 * shard lost, counted twice, weighted wrongly or normalised with the wrong group moves the
 * weights by 1e-3 or more.
 */
export function relativeMaxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`${a.length} weights vs ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

export const EQUIVALENCE_TOLERANCE = 1e-5;

/**
 * The gradient of one shard computed here, on whatever tfjs backend is active, exactly as a
 * worker computes it (augmentation, micro-batches, BatchNorm groups): the reference that the
 * cross-backend agreement tests compare a tab or a GPU backend against.
 */
export async function referenceShardGradient(
  spec: ResNetV2Spec,
  params: Float32Array,
  shard: { bnGroup: number; microBatch: number; augmentSeed: number; pixels: Uint8Array; labels: Uint8Array; indices: Int32Array },
) {
  const replica = new Replica(spec, { microBatch: shard.microBatch, bnGroup: shard.bnGroup });
  replica.setParams(params);
  try {
    return await replica.computeGradients(shardImages(shard.pixels, shard.indices, shard.augmentSeed), shard.labels);
  } finally {
    replica.dispose();
  }
}
