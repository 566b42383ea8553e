import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EpochSampler, splitShards } from '../src/index.js';

/** The first `steps` batches laid end to end: the global example stream. */
function stream(sampler: EpochSampler, steps: number): number[] {
  const out: number[] = [];
  for (let s = 0; s < steps; s++) out.push(...sampler.indicesForStep(s));
  return out;
}

describe('EpochSampler', () => {
  test('visits every example exactly once per epoch', () => {
    for (const [datasetSize, globalBatch] of [
      [1_000, 64],
      [50_000, 512],
      [7, 3],
    ]) {
      const sampler = new EpochSampler({ datasetSize, globalBatch, seed: 5 });
      const epochs = 3;
      const all = stream(sampler, Math.ceil((epochs * datasetSize) / globalBatch));
      const expected = Array.from({ length: datasetSize }, (_, i) => i);
      for (let e = 0; e < epochs; e++) {
        const epoch = all.slice(e * datasetSize, (e + 1) * datasetSize);
        assert.deepEqual([...epoch].sort((a, b) => a - b), expected, `N=${datasetSize} B=${globalBatch} epoch ${e}`);
      }
      assert.notDeepEqual(all.slice(0, datasetSize), all.slice(datasetSize, 2 * datasetSize), 'epochs reshuffle');
    }
  });

  test('gives the same batches for the same seed whatever the call order', () => {
    const opts = { datasetSize: 1_000, globalBatch: 96, seed: 77 };
    const forward = new EpochSampler(opts);
    const batches = Array.from({ length: 40 }, (_, s) => forward.indicesForStep(s));

    const backward = new EpochSampler(opts);
    for (let s = 39; s >= 0; s--) assert.deepEqual(backward.indicesForStep(s), batches[s], `step ${s}`);

    const jumpy = new EpochSampler(opts);
    for (const s of [31, 2, 39, 0, 17, 17, 25, 8]) assert.deepEqual(jumpy.indicesForStep(s), batches[s]);

    const resumed = new EpochSampler(opts);
    assert.deepEqual(resumed.indicesForStep(33), batches[33]);

    const other = new EpochSampler({ ...opts, seed: 78 });
    assert.notDeepEqual(other.indicesForStep(0), batches[0]);
  });

  test('lets a batch straddle an epoch boundary', () => {
    const sampler = new EpochSampler({ datasetSize: 10, globalBatch: 4, seed: 3 });
    assert.equal(sampler.stepsPerEpoch, 2.5);
    const all = stream(sampler, 5); // 20 examples: exactly two epochs
    const straddling = sampler.indicesForStep(2); // positions 8..11
    assert.deepEqual([...straddling], all.slice(8, 12));
    assert.deepEqual([...straddling.subarray(0, 2)].concat(all.slice(0, 8)).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual([...straddling.subarray(2)].concat(all.slice(12, 20)).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual([0, 1, 2, 3, 4, 5].map((s) => sampler.epochOf(s)), [0, 0, 0, 1, 1, 2]);
  });

  test('handles a batch larger than the dataset', () => {
    const sampler = new EpochSampler({ datasetSize: 5, globalBatch: 12, seed: 0 });
    const all = stream(sampler, 5); // 60 examples: 12 epochs
    for (let e = 0; e < 12; e++) {
      assert.deepEqual(all.slice(e * 5, e * 5 + 5).sort(), [0, 1, 2, 3, 4]);
    }
    assert.deepEqual(new EpochSampler({ datasetSize: 5, globalBatch: 12, seed: 0 }).indicesForStep(4), sampler.indicesForStep(4));
  });

  test('rejects bad options and steps', () => {
    assert.throws(() => new EpochSampler({ datasetSize: 0, globalBatch: 4, seed: 0 }), RangeError);
    assert.throws(() => new EpochSampler({ datasetSize: 10, globalBatch: 2.5, seed: 0 }), RangeError);
    assert.throws(() => new EpochSampler({ datasetSize: 10, globalBatch: 4, seed: 0.5 }), RangeError);
    const sampler = new EpochSampler({ datasetSize: 10, globalBatch: 4, seed: 0 });
    assert.throws(() => sampler.indicesForStep(-1), RangeError);
    assert.throws(() => sampler.indicesForStep(1.5), RangeError);
    assert.throws(() => sampler.epochOf(Number.NaN), RangeError);
  });
});

describe('splitShards', () => {
  const batch = Int32Array.from([10, 11, 12, 13, 14, 15, 16]);

  test('cuts consecutive shards, empty ones allowed, as copies', () => {
    const shards = splitShards(batch, [3, 0, 4]);
    assert.deepEqual(shards.map((s) => [...s]), [[10, 11, 12], [], [13, 14, 15, 16]]);
    shards[0][0] = -1;
    assert.equal(batch[0], 10);
  });

  test('rejects sizes that do not sum to the batch, or are negative or fractional', () => {
    assert.throws(() => splitShards(batch, [3, 3]), /sum to 6, but the batch has 7/);
    assert.throws(() => splitShards(batch, [8, -1]), /sizes\[1\] = -1/);
    assert.throws(() => splitShards(batch, [3.5, 3.5]), /sizes\[0\] = 3.5/);
  });
});
