import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRng } from '@chorus/data';
import { PRESETS, buildGraph, weightLayout } from '@chorus/model';
import { ErrorFeedback, LowRankFeedback, LowRankPlan, getGradientCodec, type CodecName, type EncodedVector } from '@chorus/protocol';
import { UncountedShards, type ResidualCarrier } from '../src/index.js';

const layout = weightLayout(buildGraph(PRESETS.tiny));
const P = layout.paramCount;

interface Uplink {
  feedback: ResidualCarrier;
  encode(sum: Float32Array): EncodedVector;
  /** What the coordinator makes of a payload. */
  decode(encoded: EncodedVector): Float32Array;
}

function uplink(codecName: CodecName, rank?: number): Uplink {
  const codec = getGradientCodec(codecName);
  if (!rank) {
    const feedback = new ErrorFeedback(codec, P);
    return { feedback, encode: (sum) => feedback.encode(sum), decode: (e) => codec.expand(e) };
  }
  const plan = new LowRankPlan(P, layout.params, rank);
  const factors = plan.initialFactors(createRng(5));
  const feedback = new LowRankFeedback(plan, codec);
  return {
    feedback,
    encode: (sum) => feedback.encode(sum, 'right', factors),
    decode: (e) => {
      const out = new Float32Array(P);
      plan.reconstruct(codec.expand(e), 'right', factors, out);
      return out;
    },
  };
}

const sumOf = (seed: number) => {
  const rng = createRng(seed);
  return Float32Array.from({ length: P }, () => (rng() / 2 ** 32 - 0.5) * 0.1);
};

// Every subset of three shards counted, for each uplink with a residual: what is left must be
// exactly what the counted payloads left out of their shards' sums (nothing of the others'),
// though a counted payload carried part of an uncounted shard's leftover.
for (const [codecName, rank] of [['fp16'], ['int8'], ['int8', 2], ['fp32', 2]] as [CodecName, number?][]) {
  test(`${codecName}${rank ? ` low-rank ${rank}` : ''}: shards not counted are taken back, leaving what the counted ones left out`, () => {
    for (let mask = 0; mask < 8; mask++) {
      const link = uplink(codecName, rank);
      const ledger = new UncountedShards();
      const sums = [1, 2, 3].map(sumOf);
      const decoded = sums.map((sum, k) => link.decode(ledger.encode(link.feedback, 10 + k, 4, () => link.encode(sum))));
      assert.equal(ledger.size, 3);
      const counted = Int32Array.from([0, 1, 2].filter((k) => mask & (1 << k)), (k) => 10 + k);
      const takenBack = ledger.settle(5, counted, link.feedback);
      assert.deepEqual(takenBack, [0, 1, 2].filter((k) => !(mask & (1 << k))).map((k) => 10 + k));
      assert.equal(ledger.size, 0, 'all settled');
      let worst = 0;
      for (let i = 0; i < P; i++) {
        let owed = 0;
        for (let k = 0; k < 3; k++) if (mask & (1 << k)) owed += sums[k]![i]! - decoded[k]![i]!;
        worst = Math.max(worst, Math.abs(link.feedback.carried![i]! - owed));
      }
      assert.ok(worst < 1e-6, `counted ${[...counted]}: the residual is off by ${worst}`);
    }
  });
}

test('step after step, with its buffers reused: what remains is what the counted shards of every step left out', () => {
  for (const [codecName, rank] of [['int8'], ['int8', 2]] as [CodecName, number?][]) {
    const link = uplink(codecName, rank);
    const ledger = new UncountedShards();
    const owed = new Float64Array(P);
    let seed = 1;
    for (let step = 0; step < 4; step++) {
      const ids = [10 * step, 10 * step + 1];
      const sums = ids.map(() => sumOf(seed++));
      const decoded = sums.map((sum, k) => link.decode(ledger.encode(link.feedback, ids[k]!, step, () => link.encode(sum))));
      // Each step a different shard is not counted: the first, the second, neither, both.
      const counted = ids.filter((_, k) => ![[0], [1], [], [0, 1]][step]!.includes(k));
      for (let k = 0; k < 2; k++) if (counted.includes(ids[k]!)) for (let i = 0; i < P; i++) owed[i] += sums[k]![i]! - decoded[k]![i]!;
      ledger.settle(step + 1, Int32Array.from(counted), link.feedback);
      let worst = 0;
      for (let i = 0; i < P; i++) worst = Math.max(worst, Math.abs(link.feedback.carried![i]! - owed[i]!));
      assert.ok(worst < 1e-6, `${codecName}${rank ? ` rank ${rank}` : ''}, step ${step}: the residual is off by ${worst}`);
    }
  }
});

test("a shard of an older step, whose own update was missed, counts: this update's list is another step's", () => {
  const link = uplink('int8', 2);
  const ledger = new UncountedShards();
  ledger.encode(link.feedback, 1, 4, () => link.encode(sumOf(1)));
  const before = link.feedback.carried!.slice();
  assert.deepEqual(ledger.settle(6, Int32Array.from([7, 8]), link.feedback), []);
  assert.equal(ledger.size, 0);
  assert.deepEqual(link.feedback.carried, before, 'nothing taken back');
});

test('without a list of counted shards (an older coordinator) every shard counts; later steps stay open', () => {
  const link = uplink('int8');
  const ledger = new UncountedShards();
  ledger.encode(link.feedback, 1, 4, () => link.encode(sumOf(1)));
  ledger.encode(link.feedback, 2, 5, () => link.encode(sumOf(2)));
  const before = link.feedback.carried!.slice();
  assert.deepEqual(ledger.settle(5, undefined, link.feedback), []);
  assert.equal(ledger.size, 1, "step 5's shard waits for the update to version 6");
  assert.deepEqual(link.feedback.carried, before, 'nothing taken back');
  ledger.clear();
  assert.equal(ledger.size, 0);
});

test('fp32 keeps no residual, so there is nothing to remember', () => {
  const link = uplink('fp32');
  const ledger = new UncountedShards();
  ledger.encode(link.feedback, 1, 0, () => link.encode(sumOf(1)));
  assert.equal(ledger.size, 0);
  assert.deepEqual(ledger.settle(1, new Int32Array(0), link.feedback), []);
});
