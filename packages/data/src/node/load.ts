import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  CIFAR10,
  CIFAR10_FILES,
  concatSplits,
  parseCifar10Records,
  type Cifar10,
  type Cifar10Split,
} from '../index.js';

export function howToGetCifar10(): string {
  return (
    `Get it by letting the trainer download it (ensureCifar10), or download ${CIFAR10.archiveUrl} yourself ` +
    `(md5 ${CIFAR10.archiveMd5}), extract it, and pass --data DIR with DIR the extracted cifar-10-batches-bin folder.`
  );
}

/**
 * What keeps `dir` from being a complete CIFAR-10 directory, one line per file; empty when
 * complete. Checks presence and record-aligned sizes only, so it is cheap enough to run on
 * every start; parsing catches the rest.
 */
export async function findCifar10Problems(dir: string): Promise<string[]> {
  const problems: string[] = [];
  for (const name of CIFAR10_FILES) {
    try {
      const info = await stat(join(dir, name));
      if (!info.isFile()) problems.push(`${name} is not a file`);
      else if (info.size === 0 || info.size % CIFAR10.recordBytes !== 0) {
        problems.push(`${name} has ${info.size} bytes, not a positive multiple of ${CIFAR10.recordBytes}`);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      problems.push(`${name} is missing`);
    }
  }
  return problems;
}

async function readSplitFile(path: string): Promise<Cifar10Split> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`CIFAR-10 file not found: ${path}. ${howToGetCifar10()}`, { cause: err });
    }
    throw err;
  }
  return parseCifar10Records(bytes, path);
}

/** Reads and validates the five training batches and the test batch from `dir`. */
export async function loadCifar10(dir: string): Promise<Cifar10> {
  const root = resolve(dir);
  const [train, test] = await Promise.all([
    Promise.all(CIFAR10.trainFiles.map((name) => readSplitFile(join(root, name)))).then(concatSplits),
    readSplitFile(join(root, CIFAR10.testFile)),
  ]);
  return { train, test };
}
