/**
 * Cuts a global batch into consecutive per-worker shards. Each shard is a copy so it can be
 * transferred to a worker without dragging the whole batch's buffer along.
 */
export function splitShards(indices: Int32Array, sizes: readonly number[]): Int32Array[] {
  let total = 0;
  sizes.forEach((size, i) => {
    if (!Number.isInteger(size) || size < 0) {
      throw new RangeError(`splitShards: sizes[${i}] = ${size} is not a non-negative integer`);
    }
    total += size;
  });
  if (total !== indices.length) {
    throw new RangeError(
      `splitShards: sizes [${sizes.join(', ')}] sum to ${total}, but the batch has ${indices.length} indices`,
    );
  }
  const shards: Int32Array[] = [];
  let at = 0;
  for (const size of sizes) {
    shards.push(indices.slice(at, at + size));
    at += size;
  }
  return shards;
}
