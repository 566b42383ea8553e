import { CIFAR10, type Cifar10Split } from './cifar10.js';

const { imageBytes } = CIFAR10;

function checkSplit(split: Cifar10Split, what: string): void {
  if (split.labels.length !== split.count || split.pixels.length !== split.count * imageBytes) {
    throw new Error(
      `${what}: count ${split.count} does not match ${split.labels.length} labels and ${split.pixels.length} pixel bytes`,
    );
  }
}

/** Joins splits end to end, e.g. the five training batch files into one training set. */
export function concatSplits(parts: Cifar10Split[]): Cifar10Split {
  let count = 0;
  parts.forEach((part, i) => {
    checkSplit(part, `concatSplits: part ${i}`);
    count += part.count;
  });
  const labels = new Uint8Array(count);
  const pixels = new Uint8Array(count * imageBytes);
  let at = 0;
  for (const part of parts) {
    labels.set(part.labels, at);
    pixels.set(part.pixels, at * imageBytes);
    at += part.count;
  }
  return { count, labels, pixels };
}

/**
 * Copies the chosen examples into a fresh, compact split: what a worker needs for its shard,
 * and small enough to transfer without sending the whole dataset.
 */
export function gatherExamples(split: Cifar10Split, indices: ArrayLike<number>): Cifar10Split {
  checkSplit(split, 'gatherExamples');
  const count = indices.length;
  const labels = new Uint8Array(count);
  const pixels = new Uint8Array(count * imageBytes);
  for (let k = 0; k < count; k++) {
    const i = indices[k];
    if (!Number.isInteger(i) || i < 0 || i >= split.count) {
      throw new RangeError(`gatherExamples: indices[${k}] = ${i} is outside 0..${split.count - 1}`);
    }
    labels[k] = split.labels[i];
    pixels.set(split.pixels.subarray(i * imageBytes, (i + 1) * imageBytes), k * imageBytes);
  }
  return { count, labels, pixels };
}
