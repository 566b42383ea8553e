import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorFeedback, INT8_BLOCK, applyDelta, encodeGradient, fp16Codec, fp32Codec, int8Codec, PublicWeights, type GradientCodec } from '../src/index.js';

function noise(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * scale * (1 + (s % 7));
  });
}

for (const codec of [fp16Codec, int8Codec]) {
  test(`${codec.name} error feedback: the running sum of decoded gradients tracks the true one within one quantum`, () => {
    const n = 4 * INT8_BLOCK;
    const state = new ErrorFeedback(codec, n);
    const trueSum = new Float64Array(n);
    const sentSum = new Float64Array(n);
    let plainDrift = 0;
    const plainSum = new Float64Array(n);
    for (let step = 0; step < 200; step++) {
      // A small, persistent bias under a larger noise: exactly what rounding alone loses.
      const g = noise(n, step + 1, 1e-3);
      for (let i = 0; i < n; i++) g[i] += 1e-7;
      const payload = encodeGradient(g, state);
      const decoded = codec.decode(payload, n);
      const plain = codec.decode(codec.encode(g), n);
      for (let i = 0; i < n; i++) {
        trueSum[i] += g[i];
        sentSum[i] += decoded[i];
        plainSum[i] += plain[i];
      }
    }
    // What is still owed is the residual (up to float32 rounding of each step's corrected
    // sum), and it is at most one quantum of the last step (int8: half a scale of its block;
    // fp16: half an ulp of the corrected value).
    const residual = state.carried!;
    let maxGap = 0;
    for (let i = 0; i < n; i++) {
      const gap = Math.abs(trueSum[i] - sentSum[i]);
      maxGap = Math.max(maxGap, gap);
      plainDrift = Math.max(plainDrift, Math.abs(trueSum[i] - plainSum[i]));
      const owed = trueSum[i] - sentSum[i];
      assert.ok(Math.abs(owed - residual[i]) <= 200 * 2 ** -24 * 4e-3, `element ${i}: owed ${owed}, residual ${residual[i]}`);
    }
    const quantum = codec.name === 'int8' ? (7 * 0.5e-3) / 127 : 7 * 0.5e-3 * 2 ** -10;
    assert.ok(maxGap <= quantum, `${codec.name}: gap ${maxGap} above one quantum ${quantum}`);
    assert.ok(plainDrift > 4 * maxGap, `without feedback the sums drift further: ${plainDrift} vs ${maxGap}`);
  });
}

test('error feedback: reset drops the residual; fp32 keeps none and never copies', () => {
  const state = new ErrorFeedback(int8Codec, 300);
  state.encode(noise(300, 9, 1));
  assert.ok(state.carried!.some((r) => r !== 0));
  state.reset();
  assert.ok(state.carried!.every((r) => r === 0));
  const exact = new ErrorFeedback(fp32Codec, 3);
  const g = Float32Array.from([1, 2, 3]);
  assert.equal(exact.encode(g).values, g);
  assert.equal(exact.carried, null);
  assert.throws(() => exact.encode(new Float32Array(2)), /2 values; this encoder holds 3/);
});

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

for (const codec of [fp16Codec, int8Codec] as GradientCodec[]) {
  test(`${codec.name} public weights: every copy that applies the deltas holds the coordinator's bits, within one quantum of the master`, () => {
    const n = 3 * INT8_BLOCK + 5;
    const master = noise(n, 42, 0.2);
    const coordinator = new PublicWeights(codec, master);
    const workerA = master.slice();
    const workerB = master.slice();
    for (let step = 0; step < 50; step++) {
      const update = noise(n, 100 + step, 1e-3);
      for (let i = 0; i < n; i++) master[i] -= update[i];
      const payload = coordinator.advance(master);
      applyDelta(codec, payload, workerA);
      applyDelta(codec, payload, workerB);
      assert.ok(sameBits(workerA, coordinator.weights) && sameBits(workerB, coordinator.weights), `step ${step}: bit-identical`);
      // The gap is what the last delta's rounding lost, never an accumulation.
      let gap = 0;
      for (let i = 0; i < n; i++) gap = Math.max(gap, Math.abs(master[i] - coordinator.weights[i]));
      const bound = codec.name === 'int8' ? (7 * 0.5e-3 + 1e-3) / 254 : 0.2 * 7 * 2 ** -11;
      assert.ok(gap <= bound, `step ${step}: gap ${gap} > ${bound}`);
    }
  });
}
