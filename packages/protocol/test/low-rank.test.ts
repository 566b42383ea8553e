import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { LowRankPlan, orthonormalColumns, sideOfStep } from '../src/low-rank.js';

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
    const factors = side === 'right' ? plan.initialFactors(7) : plan.nextFactors(noise(plan.payloadLength('right'), 3), 'right');
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
  const factors = plan.initialFactors(1);
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
  let factors = plan.initialFactors(3);
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

test('initial factors depend on the seed alone', () => {
  const plan = new LowRankPlan(P, TENSORS, 2);
  assert.deepEqual(plan.initialFactors(5), new LowRankPlan(P, TENSORS, 2).initialFactors(5));
  assert.notDeepEqual(plan.initialFactors(5), plan.initialFactors(6));
});
