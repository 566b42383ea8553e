import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PRESETS, buildGraph, weightLayout } from '@chorus/model';
import { fp16Codec, int8Codec } from '@chorus/protocol';
import { ReductionBuffers, StepReducer, type ReducibleShard } from '../src/run/reducer.js';

const layout = weightLayout(buildGraph(PRESETS.tiny));
const P = layout.paramCount;

function shard(count: number, fill: number): ReducibleShard {
  const bnMoments = new Float32Array(layout.bnStatCount);
  bnMoments.fill(fill, 0, layout.bnStatCount / 2);
  bnMoments.fill(1, layout.bnStatCount / 2);
  // Workers send sums over their examples: a per-example gradient of `fill` everywhere.
  return { count, lossSum: count * fill, correct: count, gradient: { values: new Float32Array(P).fill(count * fill) }, bnMoments };
}

test('sums every range once, in batch order, and takes the mean', () => {
  const r = new StepReducer(layout, 16);
  r.expect(0, 8);
  r.expect(8, 16);
  assert.equal(r.accept(8, 16, shard(8, 3)), true);
  assert.equal(r.complete, false);
  assert.equal(r.accept(0, 8, shard(8, 1)), true);
  assert.equal(r.complete, true);
  const t = r.totals();
  assert.equal(t.count, 16);
  assert.equal(t.examples, 16);
  assert.equal(t.gradient[0], (8 * 1 + 8 * 3) / 16);
  assert.equal(t.loss, 2);
  // Pooled BN moments: mean 2, variance 1 + spread of the part means (1) = 2.
  assert.equal(t.bn.moments[0], 2);
  assert.equal(t.bn.moments[layout.bnStatCount / 2], 2);
});

test('a duplicate, unknown or mismatched reply changes nothing', () => {
  const r = new StepReducer(layout, 16);
  r.expect(0, 16);
  assert.equal(r.accept(0, 8, shard(8, 1)), false);
  assert.equal(r.accept(4, 16, shard(12, 1)), false);
  assert.equal(r.accept(0, 16, shard(16, 1)), true);
  assert.equal(r.accept(0, 16, shard(16, 5)), false);
  assert.equal(r.totals().gradient[0], 1);
  assert.throws(() => r.expect(8, 12), /overlaps/);
});

test('a withdrawn range can be re-planned in pieces; its old answer is then refused', () => {
  const r = new StepReducer(layout, 24);
  r.expect(0, 8);
  r.expect(8, 24);
  r.withdraw(8);
  r.expect(8, 16);
  r.expect(16, 24);
  assert.equal(r.accept(8, 24, shard(16, 9)), false, 'the late answer of the lost worker');
  r.accept(0, 8, shard(8, 1));
  r.accept(16, 24, shard(8, 1));
  assert.deepEqual(r.pending(), [{ start: 8, end: 16 }]);
  r.accept(8, 16, shard(8, 1));
  assert.equal(r.totals().gradient[0], 1);
  assert.equal(r.totals().shards, 3);
  assert.throws(() => r.withdraw(0), /not pending/);
});

test('the result does not depend on arrival order, bit for bit', () => {
  const parts = [0, 1, 2, 3].map((i) => {
    const s = shard(8, 0);
    s.gradient = { values: new Float32Array(P).map((_, j) => Math.sin(i * 7 + j) * 10 ** (i - 2)) };
    return s;
  });
  const run = (order: number[]) => {
    const r = new StepReducer(layout, 32);
    for (let i = 0; i < 4; i++) r.expect(i * 8, i * 8 + 8);
    for (const i of order) r.accept(i * 8, i * 8 + 8, { ...parts[i], gradient: { values: parts[i].gradient.values.slice() } });
    return r.totals().gradient;
  };
  assert.deepEqual(run([3, 1, 0, 2]), run([0, 1, 2, 3]));
});

test('shards of unequal size count by their examples, not as equals', () => {
  // 24 examples cut 16 + 8 (what a slow worker's smaller share or an uneven split gives): the
  // step's mean is over examples, so the big shard weighs twice the small one. A reducer that
  // averaged the shards' own means would get 2.5 instead of 2 everywhere below.
  const r = new StepReducer(layout, 24);
  r.expect(0, 16);
  r.expect(16, 24);
  const big = shard(16, 1);
  const small = { ...shard(8, 4), correct: 2 };
  assert.equal(r.accept(16, 24, small), true);
  assert.equal(r.accept(0, 16, big), true);
  const t = r.totals();
  assert.equal(t.count, 24);
  assert.equal(t.examples, 24);
  assert.equal(t.shards, 2);
  for (const i of [0, P >> 1, P - 1]) assert.equal(t.gradient[i], (16 * 1 + 8 * 4) / 24, `gradient[${i}]`);
  assert.equal(t.loss, 2);
  assert.equal(t.accuracy, (16 + 2) / 24);
  // Pooled moments, weighted by count: mean (16 * 1 + 8 * 4) / 24 = 2; variance 1 (within the
  // parts) + (16 * (1 - 2)^2 + 8 * (4 - 2)^2) / 24 = 3 (between them).
  const half = layout.bnStatCount / 2;
  assert.equal(t.bn.count, 24);
  assert.equal(t.bn.moments[0], 2);
  assert.equal(t.bn.moments[half - 1], 2);
  assert.equal(t.bn.moments[half], 3);
  assert.equal(t.bn.moments[layout.bnStatCount - 1], 3);
});

test('compressed gradients are summed from their payloads, bit for bit as expanding them first', () => {
  for (const codec of [fp16Codec, int8Codec]) {
    const sums = [0, 1, 2].map((i) => new Float32Array(P).map((_, j) => Math.cos(i * 5 + j) * 10 ** (i - 3)));
    const payloads = sums.map((g) => codec.encode(g));
    const r = new StepReducer(layout, 24, codec);
    for (let i = 0; i < 3; i++) r.expect(i * 8, i * 8 + 8);
    for (const i of [2, 0, 1]) r.accept(i * 8, i * 8 + 8, { ...shard(8, 0), gradient: payloads[i]! });
    // The reference: expand each payload, add in batch order, divide by the batch.
    const expected = new Float32Array(P);
    for (const p of payloads) {
      const e = codec.expand(p);
      for (let j = 0; j < P; j++) expected[j] += e[j]!;
    }
    for (let j = 0; j < P; j++) expected[j] = expected[j]! / 24;
    assert.deepEqual(new Uint32Array(r.totals().gradient.buffer), new Uint32Array(expected.buffer), codec.name);
  }
});

test('a gradient of the wrong length is refused before it touches the sum', () => {
  const r = new StepReducer(layout, 8);
  r.expect(0, 8);
  assert.throws(() => r.accept(0, 8, { ...shard(8, 1), gradient: { values: new Float32Array(P - 1) } }), /gradient values/);
  assert.deepEqual(r.pending(), [{ start: 0, end: 8 }]);
});

test('reused buffers: the next step starts from zero and gets the same totals as fresh ones', () => {
  const buffers = new ReductionBuffers(P);
  const first = new StepReducer(layout, 8, undefined, buffers);
  first.expect(0, 8);
  first.accept(0, 8, shard(8, 3));
  assert.equal(first.totals().gradient[0], 3);
  const second = new StepReducer(layout, 8, undefined, buffers);
  second.expect(0, 8);
  second.accept(0, 8, shard(8, 1));
  assert.equal(second.totals().gradient, buffers.mean);
  const fresh = new StepReducer(layout, 8);
  fresh.expect(0, 8);
  fresh.accept(0, 8, shard(8, 1));
  assert.deepEqual(second.totals().gradient, fresh.totals().gradient);
  assert.throws(() => new StepReducer(layout, 8, undefined, new ReductionBuffers(P - 1)), /reduction buffers/);
});
