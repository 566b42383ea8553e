import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { checkpointChunks, decodeCheckpoint, CheckpointFormatError, type CheckpointState } from './checkpoint-format.js';
import { syncDir, writeFully } from './durable-fs.js';

export * from './checkpoint-format.js';

export interface CheckpointStoreOptions {
  /** How many of the newest checkpoints to keep on disk; default 3. */
  keep?: number;
  /** Receives warnings: unusable checkpoints that were skipped, leftovers that could not be removed. */
  log?: (message: string) => void;
}

const FILE_PATTERN = /^checkpoint-(\d+)\.chorus$/;
/** Temp files: `.checkpoint-<step>.<pid>.<random>.tmp`; never matched by FILE_PATTERN. */
const TEMP_PATTERN = /^\.checkpoint-\d+\.(\d+)\.[0-9a-f]+\.tmp$/;

export function checkpointFileName(step: number): string {
  return `checkpoint-${String(step).padStart(9, '0')}.chorus`;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Checkpoints of one run in one directory. Saves are atomic (temp file, fsync, rename, fsync of
 * the directory) and serialised; only the newest `keep` are kept. `loadLatest` returns the newest
 * checkpoint that verifies, skipping (with a warning) and quarantining newer ones that do not.
 */
export class CheckpointStore {
  readonly dir: string;
  readonly keep: number;
  private readonly log: (message: string) => void;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(dir: string, options: CheckpointStoreOptions = {}) {
    const keep = options.keep ?? 3;
    if (!Number.isInteger(keep) || keep < 1) throw new Error(`checkpoint: keep must be a positive integer, got ${keep}`);
    this.dir = dir;
    this.keep = keep;
    this.log = options.log ?? ((message) => console.warn(message));
  }

  /** Writes a checkpoint atomically and prunes old ones; resolves to its path. */
  save(state: CheckpointState): Promise<string> {
    const run = this.queue.then(() => this.saveNow(state));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async saveNow(state: CheckpointState): Promise<string> {
    const chunks = checkpointChunks(state);
    await mkdir(this.dir, { recursive: true });
    const final = join(this.dir, checkpointFileName(state.step));
    const temp = join(this.dir, `.checkpoint-${state.step}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    const hash = createHash('sha256');
    const fh = await open(temp, 'wx');
    try {
      try {
        for (const chunk of chunks) {
          hash.update(chunk);
          await writeFully(fh, chunk, 'checkpoint write');
        }
        await writeFully(fh, hash.digest(), 'checkpoint write');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(temp, final);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
    await syncDir(this.dir);
    await this.prune();
    return final;
  }

  /** Removes all but the newest `keep` checkpoints, and temp files left by dead writers. */
  private async prune(): Promise<void> {
    const names = await readdir(this.dir);
    const stale: string[] = [];
    for (const name of names) {
      const temp = TEMP_PATTERN.exec(name);
      // Our own saves are serialised, so any temp file of this process is a leftover too.
      if (temp && (Number(temp[1]) === process.pid || !isAlive(Number(temp[1])))) stale.push(name);
    }
    const checkpoints = this.list(names);
    stale.push(...checkpoints.slice(this.keep).map((c) => c.name));
    for (const name of stale) {
      await unlink(join(this.dir, name)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') this.log(`checkpoint: could not remove ${join(this.dir, name)}: ${err.message}`);
      });
    }
  }

  /** Checkpoint files, newest (highest step) first. */
  private list(names: string[]): { name: string; step: number }[] {
    return names
      .map((name) => ({ name, match: FILE_PATTERN.exec(name) }))
      .filter((e): e is { name: string; match: RegExpExecArray } => e.match !== null)
      .map((e) => ({ name: e.name, step: Number(e.match[1]) }))
      .sort((a, b) => b.step - a.step);
  }

  /** Paths of the checkpoint files on disk, newest first (unverified). */
  async paths(): Promise<string[]> {
    return this.list(await this.readNames()).map((c) => join(this.dir, c.name));
  }

  private async readNames(): Promise<string[]> {
    try {
      return await readdir(this.dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return [];
      throw new Error(`cannot read checkpoint directory '${this.dir}': ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * The newest checkpoint that verifies, or null when the directory holds none (or does not
   * exist). Newer files that fail verification are skipped with a warning and renamed to
   * `<name>.corrupt` (kept for inspection, out of the way of pruning and later loads). When
   * checkpoint files exist but none verifies, this throws rather than let a resume silently
   * start from scratch.
   */
  async loadLatest(): Promise<CheckpointState | null> {
    await this.queue;
    const checkpoints = this.list(await this.readNames());
    const failed: { name: string; reason: string; corrupt: boolean }[] = [];
    for (const { name, step } of checkpoints) {
      const path = join(this.dir, name);
      try {
        const state = decodeCheckpoint(await readFile(path));
        if (state.step !== step) throw new CheckpointFormatError(`holds step ${state.step}, not the step of its name`);
        for (const f of failed) if (f.corrupt) await this.quarantine(f.name);
        return state;
      } catch (err) {
        const corrupt = err instanceof CheckpointFormatError;
        // Read errors (EACCES, EIO...) skip the file too; anything else is a bug, not a bad file.
        if (!corrupt && (err as NodeJS.ErrnoException).code === undefined) throw err;
        const reason = (err as Error).message;
        failed.push({ name, reason, corrupt });
        this.log(`checkpoint ${path} is unusable (${reason}); trying the previous one`);
      }
    }
    if (failed.length > 0) {
      throw new Error(
        `no usable checkpoint in '${this.dir}': ${failed.map((f) => `${f.name}: ${f.reason}`).join('; ')}`,
      );
    }
    return null;
  }

  private async quarantine(name: string): Promise<void> {
    const from = join(this.dir, name);
    try {
      await rename(from, `${from}.corrupt`);
      this.log(`checkpoint: moved unusable ${from} to ${from}.corrupt`);
    } catch (err) {
      this.log(`checkpoint: could not move unusable ${from} aside: ${(err as Error).message}`);
    }
  }
}

/**
 * The newest checkpoint of this run, or null when there is none; refuses one written by a run
 * with a different configuration, since continuing it would silently train something else.
 */
export async function loadRunCheckpoint(store: CheckpointStore, fingerprint: Record<string, unknown>): Promise<CheckpointState | null> {
  const state = await store.loadLatest();
  if (!state) return null;
  const expected = JSON.stringify(fingerprint);
  const found = JSON.stringify(state.config);
  if (expected !== found) {
    throw new Error(`the checkpoint at step ${state.step} belongs to a different run configuration:\n  checkpoint: ${found}\n  this run:   ${expected}`);
  }
  return state;
}
