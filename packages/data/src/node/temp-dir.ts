import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Runs `fn` with a fresh directory `parent/prefix*` and removes it afterwards, whether `fn`
 * succeeds, throws, or the process is interrupted by a signal or exits meanwhile.
 */
export async function withTempDir<T>(parent: string, prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(parent, prefix));
  const removeNow = (): void => rmSync(dir, { recursive: true, force: true });
  const onSignal = (signal: NodeJS.Signals): void => {
    removeNow();
    unhook();
    // Listening to a signal disables Node's default exit; restore it unless the app handles it.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  const unhook = (): void => {
    for (const s of SIGNALS) process.off(s, onSignal);
    process.off('exit', removeNow);
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  process.on('exit', removeNow);
  try {
    return await fn(dir);
  } finally {
    unhook();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Removes `parent/prefix*` left by a process killed outright (SIGKILL, power loss). Only old
 * ones: a young one may belong to a download still running in another process.
 */
export async function removeStaleTempDirs(parent: string, prefix: string, olderThanMs = 24 * 3600 * 1000): Promise<void> {
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return;
  }
  const now = Date.now();
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const path = join(parent, name);
    try {
      if (now - (await stat(path)).mtimeMs > olderThanMs) await rm(path, { recursive: true, force: true });
    } catch {
      // Another process removed it first.
    }
  }
}
