import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Cifar10 } from '../src/index.js';
import { loadCifar10 } from '../src/node/index.js';

/** The monorepo root: the nearest package.json above this file that declares workspaces. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && 'workspaces' in JSON.parse(readFileSync(manifest, 'utf8'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root above the test files');
    dir = up;
  }
}

/** The real CIFAR-10: shared/ sits beside the repository checkout; CHORUS_CIFAR_DIR overrides. */
export const CIFAR_DIR =
  process.env.CHORUS_CIFAR_DIR ?? join(repoRoot(), '..', 'shared', 'datasets', 'cifar-10-batches-bin');

let cached: Promise<Cifar10> | undefined;

export function realCifar10(): Promise<Cifar10> {
  if (!existsSync(CIFAR_DIR)) {
    throw new Error(`the real CIFAR-10 is not at ${CIFAR_DIR}; set CHORUS_CIFAR_DIR to the cifar-10-batches-bin folder`);
  }
  cached ??= loadCifar10(CIFAR_DIR);
  return cached;
}
