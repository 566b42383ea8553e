import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { createRng } from '@chorus/data';
import { LowRankFeedback, LowRankPlan, orthonormalColumns, sideOfStep } from '../src/low-rank.js';
import { PROTOCOL_VERSION, ProtocolError, encodeMessage, fp32Codec, int8Codec, parseMessage } from '../src/index.js';

function noise(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

// A conv kernel [3, 3, 4, 8] (36 x 8), a bias of 8, a dense kernel [16, 10], a small [2, 2]
// that stays uncompressed at rank 2, and a bias of 10: 288 + 8 + 160 + 4 + 10 values.
const TENSORS = [
  { offset: 0, shape: [3, 3, 4, 8] },
  { offset: 288, shape: [8] },
  { offset: 296, shape: [16, 10] },
  { offset: 456, shape: [2, 2] },
  { offset: 460, shape: [10] },
];
const P = 470;

function columnsOf(f: Float32Array, rows: number, rank: number): Float64Array[] {
  return Array.from({ length: rank }, (_, k) => Float64Array.from({ length: rows }, (_, i) => f[i * rank + k]!));
}
const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, x, i) => s + x * b[i]!, 0);

test('a plan compresses the matrices whose projection is smaller and passes the rest through in order', () => {
  const plan = new LowRankPlan(P, TENSORS, 2);
  assert.deepEqual(plan.matrices, [{ offset: 0, rows: 36, cols: 8 }, { offset: 296, rows: 16, cols: 10 }]);
  assert.deepEqual(plan.passthrough, [[288, 296], [456, P]]);
  assert.equal(plan.payloadLength('right'), 2 * (36 + 16) + 22);
  assert.equal(plan.payloadLength('left'), 2 * (8 + 10) + 22);
  assert.equal(plan.factorLength('right'), 2 * (8 + 10));
  assert.equal(plan.factorLength('left'), 2 * (36 + 16));
  assert.equal(sideOfStep(0), 'right');
  assert.equal(sideOfStep(7), 'left');
});

test('orthonormalColumns gives orthonormal columns, also from zero, repeated and non-finite columns', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 4, max: 20 }), fc.integer(), fc.constantFrom('noise', 'zero', 'repeat', 'nan'), (rank, rows, seed, kind) => {
      const g = noise(rows * rank, seed);
      if (kind === 'zero') g.fill(0);
      if (kind === 'repeat') for (let i = 0; i < rows; i++) for (let k = 1; k < rank; k++) g[i * rank + k] = g[i * rank]!;
      if (kind === 'nan') g[0] = NaN;
      const q = orthonormalColumns(g, rows, rank);
      const cols = columnsOf(q, rows, rank);
      for (let a = 0; a < rank; a++) {
        for (let b = 0; b < rank; b++) assert.ok(Math.abs(dot(cols[a]!, cols[b]!) - (a === b ? 1 : 0)) < 1e-5, `column ${a}.${b}`);
      }
    }),
  );
});

test('projection then reconstruction keeps a matrix that lies in the fixed factor\'s span exactly (to rounding), and the passthrough values bit for bit', () => {
  const plan = new LowRankPlan(P, TENSORS, 2);
  for (const side of ['right', 'left'] as const) {
    const factors = side === 'right' ? plan.initialFactors(createRng(7)) : plan.nextFactors(noise(plan.payloadLength('right'), 3), 'right');
    // M = A B^T with the fixed factor on its side: then projecting loses nothing.
    const values = noise(P, 11);
    let f = 0;
    for (const { offset, rows, cols } of plan.matrices) {
      const fixedRows = side === 'right' ? cols : rows;
      const other = noise((side === 'right' ? rows : cols) * 2, offset + 1);
      for (let i = 0; i < rows; i++) {
        for (let j = 0; j < cols; j++) {
          let s = 0;
          for (let k = 0; k < 2; k++) s += side === 'right' ? other[i * 2 + k]! * factors[f + j * 2 + k]! : factors[f + i * 2 + k]! * other[j * 2 + k]!;
          values[offset + i * cols + j] = s;
        }
      }
      f += fixedRows * 2;
    }
    const payload = new Float32Array(plan.payloadLength(side));
    plan.project(values, side, factors, payload);
    const back = new Float32Array(P);
    plan.reconstruct(payload, side, factors, back);
    for (let i = 0; i < P; i++) assert.ok(Math.abs(back[i]! - values[i]!) < 1e-5, `${side} value ${i}: ${back[i]} vs ${values[i]}`);
    for (const [s, e] of plan.passthrough) assert.deepEqual(back.subarray(s, e), values.subarray(s, e));
  }
});

test('projection is linear: the sum of two workers\' payloads reconstructs the projection of the summed gradient', () => {
  const plan = new LowRankPlan(P, TENSORS, 3);
  const factors = plan.initialFactors(createRng(1));
  const a = noise(P, 1);
  const b = noise(P, 2);
  const pa = new Float32Array(plan.payloadLength('right'));
  const pb = new Float32Array(plan.payloadLength('right'));
  const pab = new Float32Array(plan.payloadLength('right'));
  plan.project(a, 'right', factors, pa);
  plan.project(b, 'right', factors, pb);
  plan.project(a.map((x, i) => x + b[i]!), 'right', factors, pab);
  for (let i = 0; i < pab.length; i++) assert.ok(Math.abs(pa[i]! + pb[i]! - pab[i]!) < 1e-5);
});

test('alternating steps converge on a fixed low-rank gradient (one power iteration per step)', () => {
  const plan = new LowRankPlan(P, TENSORS, 2);
  // A gradient of rank 2 in every matrix: after a right and a left step the factors hold it.
  const g = new Float32Array(P);
  for (const { offset, rows, cols } of plan.matrices) {
    const u = noise(rows * 2, offset + 5);
    const v = noise(cols * 2, offset + 9);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) g[offset + i * cols + j] = u[i * 2]! * v[j * 2]! + 0.5 * u[i * 2 + 1]! * v[j * 2 + 1]!;
  }
  let factors = plan.initialFactors(createRng(3));
  let error = Infinity;
  for (let step = 0; step < 4; step++) {
    const side = sideOfStep(step);
    const payload = new Float32Array(plan.payloadLength(side));
    plan.project(g, side, factors, payload);
    const back = new Float32Array(P);
    plan.reconstruct(payload, side, factors, back);
    error = 0;
    for (const { offset, rows, cols } of plan.matrices) for (let i = offset; i < offset + rows * cols; i++) error = Math.max(error, Math.abs(back[i]! - g[i]!));
    factors = plan.nextFactors(payload, side);
  }
  assert.ok(error < 1e-5, `after four steps the rank-2 gradient is reproduced to ${error}`);
});

test('initial factors depend on the random stream alone', () => {
  const plan = new LowRankPlan(P, TENSORS, 2);
  assert.deepEqual(plan.initialFactors(createRng(5)), new LowRankPlan(P, TENSORS, 2).initialFactors(createRng(5)));
  assert.notDeepEqual(plan.initialFactors(createRng(5)), plan.initialFactors(createRng(6)));
});

test('low-rank error feedback: what the coordinator reconstructs plus the new residual is the sum plus the old residual', () => {
  for (const codec of [fp32Codec, int8Codec]) {
    const plan = new LowRankPlan(P, TENSORS, 2);
    const feedback = new LowRankFeedback(plan, codec);
    let factors = plan.initialFactors(createRng(2));
    for (let step = 0; step < 6; step++) {
      const side = sideOfStep(step);
      const before = feedback.carried.slice();
      const sum = noise(P, 100 + step);
      const payload = feedback.encode(sum, side, factors);
      assert.equal(payload.values.length, plan.payloadLength(side));
      const reconstructed = new Float32Array(P);
      plan.reconstruct(codec.expand(payload), side, factors, reconstructed);
      for (let i = 0; i < P; i++) {
        const kept = reconstructed[i]! + feedback.carried[i]!;
        assert.ok(Math.abs(kept - (sum[i]! + before[i]!)) < 1e-6, `${codec.name} step ${step} value ${i}`);
      }
      // Passthrough values lose nothing under fp32: their residual stays zero.
      if (codec === fp32Codec) for (const [s, e] of plan.passthrough) for (let i = s; i < e; i++) assert.equal(feedback.carried[i], 0);
      factors = plan.nextFactors(codec.expand(payload) as Float32Array, side);
    }
    feedback.reset();
    assert.ok(feedback.carried.every((x) => x === 0));
  }
});

test('parseMessage holds a low-rank run\'s gradients to the payload length of their step, and its updates to carrying the next factors', () => {
  const plan = new LowRankPlan(P, TENSORS, 2);
  const limits = { paramCount: P, bnStatCount: 4, maxShardExamples: 64, codec: 'fp32' as const, lowRank: plan };
  const gradient = (step: number, length: number) =>
    encodeMessage({ type: 'gradient', v: PROTOCOL_VERSION, step, shardId: 1, count: 8, lossSum: 1, correct: 0, computeMs: 1, gradient: new Float32Array(length), bnMoments: new Float32Array(4) });
  assert.equal(parseMessage(gradient(0, plan.payloadLength('right')), limits).type, 'gradient');
  assert.equal(parseMessage(gradient(1, plan.payloadLength('left')), limits).type, 'gradient');
  assert.throws(() => parseMessage(gradient(1, plan.payloadLength('right')), limits), (e: unknown) => e instanceof ProtocolError && e.code === 'bad-gradient' && /low-rank payload length on a left step/.test(e.message));
  assert.throws(() => parseMessage(gradient(0, P), limits), (e: unknown) => e instanceof ProtocolError && e.code === 'bad-gradient');
  const update = (version: number, factors?: Float32Array) =>
    encodeMessage({ type: 'update', v: PROTOCOL_VERSION, version, params: new Float32Array(P), bnStats: new Float32Array(4), ...(factors ? { factors } : {}) });
  assert.equal(parseMessage(update(3, new Float32Array(plan.factorLength('left'))), limits).type, 'update');
  assert.throws(() => parseMessage(update(3), limits), /update.factors is missing/);
  assert.throws(() => parseMessage(update(3, new Float32Array(plan.factorLength('right'))), limits), /update.factors has/);
  assert.throws(() => parseMessage(update(3, Float32Array.of(NaN, ...new Float32Array(plan.factorLength('left') - 1))), limits), ProtocolError);
  // A run without low-rank gradients refuses factors it would not use.
  const { lowRank: _, ...plain } = limits;
  assert.throws(() => parseMessage(update(3, new Float32Array(4)), plain), /update.factors in a run without low-rank gradients/);
});

test('a welcome names a low-rank run and carries its factors together, or neither', () => {
  const welcome = (lowRank: boolean, factors: boolean) =>
    encodeMessage({
      type: 'welcome', v: PROTOCOL_VERSION, workerId: 'w1', version: 0, params: new Float32Array(3), bnStats: new Float32Array(2),
      run: { preset: 'tiny', spec: {}, paramCount: 3, bnStatCount: 2, bnGroup: 4, codec: 'fp32', heartbeatMs: 1000, ...(lowRank ? { lowRank: 2 } : {}) },
      ...(factors ? { factors: new Float32Array(4) } : {}),
    });
  assert.equal(parseMessage(welcome(true, true)).type, 'welcome');
  assert.equal(parseMessage(welcome(false, false)).type, 'welcome');
  assert.throws(() => parseMessage(welcome(true, false)), /low-rank run \(run.lowRank\) and factors come together/);
  assert.throws(() => parseMessage(welcome(false, true)), /low-rank run \(run.lowRank\) and factors come together/);
});

test('any bytes in a low-rank gradient, update or welcome frame: parsed, or refused with a ProtocolError, never anything else', () => {
  const plan = new LowRankPlan(P, TENSORS, 2);
  const limits = { paramCount: P, bnStatCount: 4, maxShardExamples: 64, codec: 'int8' as const, lowRank: plan };
  const gradient = encodeMessage({ type: 'gradient', v: PROTOCOL_VERSION, step: 1, shardId: 1, count: 8, lossSum: 1, correct: 0, computeMs: 1, ...(() => { const e = int8Codec.encode(noise(plan.payloadLength('left'), 4)); return { gradient: e.values, scales: e.scales! }; })(), bnMoments: new Float32Array(4) });
  // What a worker reads: an update with the next step's factors, and a welcome with the current ones.
  const delta = int8Codec.encode(noise(P, 5));
  const update = encodeMessage({ type: 'update', v: PROTOCOL_VERSION, version: 3, delta: delta.values, scales: delta.scales!, bnStats: new Float32Array(4), factors: noise(plan.factorLength('left'), 6), counted: Int32Array.of(3, 9, 12) });
  const welcome = encodeMessage({
    type: 'welcome', v: PROTOCOL_VERSION, workerId: 'w1', version: 3, params: noise(P, 7), bnStats: new Float32Array(4), factors: noise(plan.factorLength('left'), 8),
    run: { preset: 'tiny', spec: {}, paramCount: P, bnStatCount: 4, bnGroup: 4, codec: 'int8', lowRank: 2, heartbeatMs: 1000 },
  });
  for (const [valid, frameLimits] of [[gradient, limits], [update, limits], [welcome, undefined]] as const) {
    assert.ok(parseMessage(valid, frameLimits));
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), fc.nat(valid.length), (edits, cut) => {
        const frame = valid.slice(0, Math.max(cut, 4));
        for (const [at, byte] of edits) if (at < frame.length) frame[at] = byte;
        try {
          parseMessage(frame, frameLimits);
        } catch (error) {
          assert.ok(error instanceof ProtocolError, `not a ProtocolError: ${String(error)}`);
        }
      }),
      { numRuns: 500 },
    );
  }
});
