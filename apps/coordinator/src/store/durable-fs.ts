import { open, type FileHandle } from 'node:fs/promises';

/** Writes all of `data` (fs writes may be partial). */
export async function writeFully(fh: FileHandle, data: Uint8Array, what = 'write'): Promise<void> {
  let done = 0;
  while (done < data.byteLength) {
    const { bytesWritten } = await fh.write(data, done, data.byteLength - done);
    if (bytesWritten <= 0) throw new Error(`${what} made no progress`);
    done += bytesWritten;
  }
}

/** Creates `path` (failing if it exists), writes the chunks and fsyncs before closing. */
export async function writeFileDurably(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  const fh = await open(path, 'wx');
  try {
    for (const chunk of chunks) await writeFully(fh, chunk, `write to ${path}`);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsync a directory so a rename in it is durable; a no-op where directories cannot be opened (Windows). */
export async function syncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EACCES') throw err;
  } finally {
    await fh?.close();
  }
}
