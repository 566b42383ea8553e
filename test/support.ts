import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

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

  kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

const live = new Set<Proc>();
process.on('exit', () => {
  for (const p of live) p.child.kill('SIGKILL');
});

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

export async function startCoordinator(args: string[]): Promise<CoordinatorProc> {
  const proc = new Proc([coordinatorCli, '--host', '127.0.0.1', '--port', '0', '--data', cifarDir, ...args]);
  const banner = await waitFor('the coordinator banner', () => {
    if (proc.child.exitCode !== null) throw new Error(`coordinator exited:\n${proc.output}`);
    const m = /dashboard:\s+http:\/\/127\.0\.0\.1:(\d+)\/[\s\S]*?token:\s+(\S+)|token:\s+(\S+)[\s\S]*?dashboard:\s+http:\/\/127\.0\.0\.1:(\d+)\//.exec(proc.output);
    return m ? { port: Number(m[1] ?? m[4]), token: m[2] ?? m[3] } : null;
  });
  const base = `http://127.0.0.1:${banner.port}`;
  return {
    proc,
    port: banner.port,
    token: banner.token,
    url: `ws://127.0.0.1:${banner.port}/ws`,
    status: async () => (await (await fetch(`${base}/api/status`)).json()) as Status,
  };
}

export function startWorker(url: string, token: string, extra: string[] = []): Proc {
  return new Proc([workerCli, url, '--token', token, '--backend', 'wasm', ...extra]);
}
