import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Where a downloaded CIFAR-10 lives: $CHORUS_CACHE_DIR/cifar-10-batches-bin, else
 * ~/.cache/chorus/cifar-10-batches-bin. One shared copy, so no trainer downloads it twice.
 */
export function defaultCifar10CacheDir(): string {
  const root = process.env.CHORUS_CACHE_DIR || join(homedir(), '.cache', 'chorus');
  return join(root, 'cifar-10-batches-bin');
}
