import { mkdir, readdir, readFile, rename, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { extract } from 'tar';
import { CIFAR10, CIFAR10_FILES, parseCifar10Records } from '../index.js';
import { DownloadError, downloadFile } from './download.js';
import { findCifar10Problems } from './load.js';
import { defaultCifar10CacheDir } from './paths.js';
import { removeStaleTempDirs, withTempDir } from './temp-dir.js';

export interface EnsureCifar10Options {
  /** A directory that must already hold the six .bin files (the CLI's --data DIR). */
  data?: string;
  /** Where the files are looked for and downloaded to; default defaultCifar10CacheDir(). */
  cacheDir?: string;
  url?: string;
  md5?: string;
  /** Show download progress on stderr; default true. */
  progress?: boolean;
  fetchImpl?: typeof fetch;
  /** Abort a download that receives nothing for this long; default 30 s. */
  idleTimeoutMs?: number;
}

/** The folder the official archive unpacks to. */
const ARCHIVE_FOLDER = 'cifar-10-batches-bin';

/** The way out when the download cannot work: fetch the archive by other means. */
function manualHint(url: string, md5: string): string {
  return (
    `download ${url} yourself (md5 ${md5}), extract it, and pass --data DIR ` +
    `with DIR the extracted ${ARCHIVE_FOLDER} folder.`
  );
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** An empty folder (say, made by hand) is as good as none: rename replaces it. */
async function isEmptyDir(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length === 0;
  } catch {
    return false;
  }
}

/**
 * Returns a directory holding the six CIFAR-10 .bin files: `data` if given, else the cache,
 * downloading the official archive into the cache on first use.
 */
export async function ensureCifar10(opts: EnsureCifar10Options = {}): Promise<string> {
  if (opts.data !== undefined) {
    const dir = resolve(opts.data);
    const problems = await findCifar10Problems(dir);
    if (problems.length > 0) {
      const nested = join(dir, ARCHIVE_FOLDER);
      const hint =
        (await findCifar10Problems(nested)).length === 0
          ? ` Did you mean --data ${nested}?`
          : ` To get it, ${manualHint(CIFAR10.archiveUrl, CIFAR10.archiveMd5)}`;
      throw new Error(`--data ${dir} does not hold CIFAR-10: ${problems.join('; ')}.${hint}`);
    }
    return dir;
  }

  const dest = resolve(opts.cacheDir ?? defaultCifar10CacheDir());
  if ((await exists(dest)) && !(await isEmptyDir(dest))) {
    const problems = await findCifar10Problems(dest);
    if (problems.length === 0) return dest;
    // Downloads land atomically, so this was not made by us; deleting a user's folder is not ours to do.
    throw new Error(
      `${dest} exists but is not a complete CIFAR-10 directory (${problems.join('; ')}). ` +
        `Remove it to download again, or pass --data DIR.`,
    );
  }
  await downloadCifar10Into(dest, opts);
  return dest;
}

/**
 * Downloads, verifies and unpacks in a temporary folder beside `dest`, then renames into place:
 * `dest` either does not exist or is complete, whatever fails or interrupts on the way.
 */
async function downloadCifar10Into(dest: string, opts: EnsureCifar10Options): Promise<void> {
  const url = opts.url ?? CIFAR10.archiveUrl;
  const md5 = (opts.md5 ?? CIFAR10.archiveMd5).toLowerCase();
  const parent = dirname(dest);
  const prefix = `.${basename(dest)}.tmp-`;
  await mkdir(parent, { recursive: true });
  await removeStaleTempDirs(parent, prefix);

  await withTempDir(parent, prefix, async (tmp) => {
    const progress = opts.progress ?? true;
    if (progress) process.stderr.write(`CIFAR-10 not found in ${dest}; downloading ${url}\n`);
    const archive = join(tmp, 'cifar-10-binary.tar.gz');
    let actualMd5: string;
    try {
      ({ md5: actualMd5 } = await downloadFile(url, archive, {
        fetchImpl: opts.fetchImpl,
        progress,
        label: 'CIFAR-10',
        idleTimeoutMs: opts.idleTimeoutMs,
      }));
    } catch (err) {
      if (!(err instanceof DownloadError)) throw err;
      const lead =
        err.failure === 'unreachable'
          ? `Cannot download CIFAR-10: the network is unreachable (${err.message}). Instead,`
          : `Downloading CIFAR-10 failed: ${err.message}. Retry, or`;
      throw new Error(`${lead} ${manualHint(url, md5)}`, { cause: err });
    }
    if (actualMd5 !== md5) {
      throw new Error(
        `Downloaded ${url} has md5 ${actualMd5}, expected ${md5}: the download is corrupt or the URL serves ` +
          `another file. Nothing was kept. Retry, or ${manualHint(url, md5)}`,
      );
    }

    const unpacked = join(tmp, 'unpacked');
    await mkdir(unpacked);
    try {
      await extract({ file: archive, cwd: unpacked, strict: true });
    } catch (err) {
      throw new Error(`Cannot unpack ${url}: ${(err as Error).message}`, { cause: err });
    }
    const folder = join(unpacked, ARCHIVE_FOLDER);
    for (const name of CIFAR10_FILES) {
      let bytes: Uint8Array;
      try {
        bytes = await readFile(join(folder, name));
      } catch (err) {
        throw new Error(`The archive from ${url} lacks ${ARCHIVE_FOLDER}/${name}.`, { cause: err });
      }
      parseCifar10Records(bytes, `${ARCHIVE_FOLDER}/${name} in ${url}`);
    }

    try {
      await rename(folder, dest);
    } catch (err) {
      // Another process may have finished the same download first; its copy is as good as ours.
      const code = (err as NodeJS.ErrnoException).code;
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await findCifar10Problems(dest)).length === 0) return;
      throw err;
    }
    if (progress) process.stderr.write(`CIFAR-10 ready in ${dest}\n`);
  });
}
