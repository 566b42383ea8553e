/**
 * Low-rank compression's WebAssembly SIMD kernels (assembly/low-rank-kernels.ts) give the same
 * bits as LowRankPlan's JavaScript loops: the coordinator's reconstruction of the step's
 * gradient reaches the master weights, so a run must not depend on which path ran (a resume on
 * an engine without SIMD continues the same run), and a worker's payload is the same either
 * way. Each property runs both paths on the same arrays and compares bytes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { LowRankPlan, type LowRankSide, type LowRankTensor } from '../src/low-rank.js';
import { setLowRankKernelsEnabled, simdProject, simdReconstruct } from '../src/simd/low-rank-kernels.js';
import { LOW_RANK_KERNELS_WASM } from '../src/simd/low-rank.generated.js';

function bothPaths<T>(f: () => T): { simd: T; js: T } {
  const previous = setLowRankKernelsEnabled(true);
  try {
    const simd = f();
    setLowRankKernelsEnabled(false);
    return { simd, js: f() };
  } finally {
    setLowRankKernelsEnabled(previous);
  }
}

const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Float32 values of every scale, zeros of both signs among them: what gradients hold (never NaN or infinite). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  return Float32Array.from({ length: n }, () => {
    const u = next();
    if (u % 97 === 0) return u % 2 ? 0 : -0;
    return (next() / 2 ** 32 - 0.5) * 2 ** ((u % 41) - 30);
  });
}

/**
 * A layout of conv kernels, dense kernels and biases with odd and even sides, padded with a
 * bias long enough that the kernels take the call (they leave short vectors to JavaScript).
 */
const layouts = fc
  .array(
    fc.oneof(
      fc.tuple(fc.constantFrom(1, 3), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 33 })).map(([k, cin, cout]) => [k, k, cin, cout]),
      fc.tuple(fc.integer({ min: 1, max: 70 }), fc.integer({ min: 1, max: 21 })).map(([a, b]) => [a, b]),
      fc.integer({ min: 1, max: 40 }).map((n) => [n]),
    ),
    { minLength: 1, maxLength: 6 },
  )
  .map((shapes) => {
    const tensors: LowRankTensor[] = [];
    let offset = 0;
    for (const shape of [...shapes, [1024]]) {
      tensors.push({ offset, shape });
      offset += shape.reduce((a, b) => a * b, 1);
    }
    return { tensors, paramCount: offset };
  });

test('the module is small enough to compile synchronously anywhere and imports nothing', () => {
  const bytes = Buffer.from(LOW_RANK_KERNELS_WASM, 'base64');
  assert.ok(bytes.length <= 4096, `${bytes.length} bytes: over 4 KiB`);
  assert.deepEqual(WebAssembly.Module.imports(new WebAssembly.Module(bytes)), []);
});

test('projection and reconstruction give the same bits with and without the SIMD kernels, for every rank, side and matrix shape', () => {
  fc.assert(
    fc.property(layouts, fc.integer({ min: 1, max: 9 }), fc.constantFrom<LowRankSide>('right', 'left'), fc.integer(), ({ tensors, paramCount }, rank, side, seed) => {
      const plan = new LowRankPlan(paramCount, tensors, rank);
      const gradient = values(paramCount, seed);
      const factors = values(plan.factorLength(side), seed ^ 0x5bd1e995);
      const payload = new Float32Array(plan.payloadLength(side));
      // The kernels really run on this engine for these lengths: both paths below are real.
      assert.equal(simdProject(plan.matrices, rank, gradient, side, factors, payload), true);
      const projected = bothPaths(() => {
        const out = new Float32Array(plan.payloadLength(side));
        plan.project(gradient, side, factors, out);
        return out;
      });
      assert.ok(bytesOf(projected.simd).equals(bytesOf(projected.js)), 'projections differ');
      const rebuilt = bothPaths(() => {
        const out = new Float32Array(paramCount).fill(NaN);
        plan.reconstruct(projected.js, side, factors, out);
        return out;
      });
      assert.ok(bytesOf(rebuilt.simd).equals(bytesOf(rebuilt.js)), 'reconstructions differ');
      assert.ok(rebuilt.simd.every(Number.isFinite), 'a value of the vector was not written');
      assert.equal(simdReconstruct(plan.matrices, rank, projected.js, side, factors, new Float32Array(paramCount)), true);
    }),
    { numRuns: 150 },
  );
});

test('with the kernels off, nothing is written through them and the JavaScript loops run', () => {
  const plan = new LowRankPlan(4096, [{ offset: 0, shape: [3, 3, 16, 16] }, { offset: 2304, shape: [1792] }], 4);
  const previous = setLowRankKernelsEnabled(false);
  try {
    const out = new Float32Array(plan.payloadLength('right'));
    assert.equal(simdProject(plan.matrices, 4, new Float32Array(4096), 'right', new Float32Array(plan.factorLength('right')), out), false);
    assert.equal(simdReconstruct(plan.matrices, 4, out, 'right', new Float32Array(plan.factorLength('right')), new Float32Array(4096)), false);
  } finally {
    setLowRankKernelsEnabled(previous);
  }
});
