/**
 * The codecs' WebAssembly SIMD kernels (assembly/vector-kernels.ts) give the same bits as the
 * JavaScript loops they stand in for, on every kind of input: peers with and without SIMD must
 * hold the same public weights, and a coordinator's sum must not depend on which path ran. Each
 * property runs both paths (setVectorKernelsEnabled) on the same arrays and compares bytes.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ErrorFeedback,
  fp16Codec,
  INT8_BLOCK,
  PublicWeights,
  fp32Codec,
  int8Codec,
  setVectorKernelsEnabled,
  vectorKernelsAvailable,
  type EncodedVector,
} from '../src/index.js';
import { payloadProblem } from '../src/gradient-codec.js';
import { VECTOR_KERNELS_WASM } from '../src/simd/module.generated.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

test('src/simd/*.generated.ts are what scripts/build-wasm.mjs builds from assembly/ (the codecs\' and the low-rank kernels)', () => {
  execFileSync(process.execPath, [join(root, 'scripts/build-wasm.mjs'), '--check'], { stdio: 'pipe' });
});

test('the module is small enough to compile synchronously anywhere, imports nothing, and runs here', () => {
  const bytes = Buffer.from(VECTOR_KERNELS_WASM, 'base64');
  // Chromium compiles synchronously on a page's main thread only up to 4 KiB.
  assert.ok(bytes.length <= 4096, `${bytes.length} bytes: over 4 KiB`);
  assert.deepEqual(WebAssembly.Module.imports(new WebAssembly.Module(bytes)), []);
  // Node 20 has WebAssembly SIMD: the properties below compare two real paths, not one with itself.
  assert.equal(vectorKernelsAvailable(), true);
});

/** Runs `f` with the SIMD kernels on, then off, and returns both results. */
function bothPaths<T>(f: () => T): { simd: T; js: T } {
  const previous = setVectorKernelsEnabled(true);
  try {
    const simd = f();
    setVectorKernelsEnabled(false);
    return { simd, js: f() };
  } finally {
    setVectorKernelsEnabled(previous);
  }
}

const bytesOf = (a: ArrayBufferView | undefined) => (a ? Buffer.from(a.buffer, a.byteOffset, a.byteLength) : Buffer.alloc(0));
function assertSameBits(a: ArrayBufferView | undefined, b: ArrayBufferView | undefined, what: string): void {
  assert.ok(bytesOf(a).equals(bytesOf(b)), `${what} differ between the SIMD and JavaScript paths`);
}

/**
 * Float32 vectors long enough for the kernels (they leave short ones to JavaScript), of lengths
 * that end mid-vector and mid-block, with gradient-like magnitudes and, sometimes, the values
 * that take the rare paths: zeros, subnormals, NaN, infinities, values near the float32 maximum,
 * and whole blocks of one of them.
 */
// Also the half-precision edges: the largest half, the first value that rounds past it, a tie
// at the top, subnormal halves and ties between them.
const special = fc.constantFrom(0, -0, 1e-45, -3e-39, NaN, Infinity, -Infinity, 3.4e38, -3.4028234e38, 1.5, -0.5, 127.5, 65504, -65519.99, 65520, 6e-8, -2.9802322e-8, 8.940697e-8, 6.1e-5, 1 + 2 ** -11);
const vectors = fc
  .record({
    length: fc.integer({ min: 1024, max: 4 * INT8_BLOCK + 1100 }),
    seed: fc.integer(),
    specials: fc.array(fc.tuple(fc.nat(), special), { maxLength: 6 }),
    flatBlock: fc.option(fc.tuple(fc.nat(), special)),
  })
  .map(({ length, seed, specials, flatBlock }) => {
    let s = seed >>> 0;
    const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const v = Float32Array.from({ length }, () => (next() < 0.5 ? -1 : 1) * 10 ** (-9 + 13 * next()));
    for (const [i, x] of specials) v[i % length] = x;
    if (flatBlock) {
      const start = (flatBlock[0] % Math.ceil(length / INT8_BLOCK)) * INT8_BLOCK;
      v.fill(flatBlock[1], start, Math.min(length, start + INT8_BLOCK));
    }
    return v;
  });
const finiteVectors = vectors.map((v) => v.map((x) => (Number.isFinite(x) ? x : 0.25)));

test('int8 encode: the same quanta, scales and lost values on both paths', () => {
  fc.assert(
    fc.property(vectors, (v) => {
      const { simd, js } = bothPaths(() => {
        const lost = new Float32Array(v.length);
        const plain = int8Codec.encode(v);
        const withLost = int8Codec.encode(v, lost);
        // `lost` may be `values` (the contract), also after a call that left other numbers behind.
        int8Codec.encode(v.map((x) => 3 * x + 1), new Float32Array(v.length));
        const aliased = v.slice();
        const aliasedPayload = int8Codec.encode(aliased, aliased);
        return { plain, withLost, lost, aliased, aliasedPayload };
      });
      assertSameBits(simd.plain.values, js.plain.values, 'quanta');
      assertSameBits(simd.plain.scales, js.plain.scales, 'scales');
      assertSameBits(simd.withLost.values, js.withLost.values, 'quanta (with lost)');
      assertSameBits(simd.lost, js.lost, 'lost values');
      assertSameBits(simd.aliasedPayload.values, js.aliasedPayload.values, 'quanta (lost is values)');
      assertSameBits(simd.aliasedPayload.scales, js.aliasedPayload.scales, 'scales (lost is values)');
      assertSameBits(simd.aliased, js.aliased, 'lost values (lost is values)');
    }),
    { numRuns: 150 },
  );
});

test('int8 encode: quotients exactly half-way between two quanta round as in JavaScript, where 1 / scale is inexact', () => {
  // Each block's scale is a float32 s whose (k + 0.5) x s are float32s for many k, so the
  // quotients are exact ties. For these s (found by search) a multiplication by 1 / s, the
  // obvious way to speed the kernel's division up, lands an ulp beside some of them (60243 x
  // 2^-22 at 110.5, for one) and rounds them the other way; the kernel must round as JavaScript.
  const scales = [60243 * 2 ** -22, 38851 * 2 ** -33, 43609 * 2 ** 17, 127569 * 2 ** 5, 24885 * 2 ** -21, 3, 7 * 2 ** 10];
  const v = new Float32Array(scales.length * INT8_BLOCK + 77);
  scales.forEach((scale, b) => {
    const start = b * INT8_BLOCK;
    v[start] = 127 * scale; // the block's maximum, so its scale is exactly `scale`
    for (let i = 1; i < INT8_BLOCK; i++) v[start + i] = (i % 2 ? 1 : -1) * ((i % 127) + 0.5) * scale;
  });
  for (let i = scales.length * INT8_BLOCK; i < v.length; i++) v[i] = (i % 7) - 3.5;
  const { simd, js } = bothPaths(() => {
    const lost = new Float32Array(v.length);
    return { payload: int8Codec.encode(v, lost), lost };
  });
  assertSameBits(simd.payload.scales, js.payload.scales, 'scales');
  assert.deepEqual([...simd.payload.scales!.subarray(0, scales.length)], scales.map((x) => Math.fround(x)));
  assertSameBits(simd.payload.values, js.payload.values, 'quanta of half-way quotients');
  assertSameBits(simd.lost, js.lost, 'lost values');
});

test('int8 and fp32 addTo: the same sums on both paths', () => {
  fc.assert(
    fc.property(finiteVectors, finiteVectors, (a, b) => {
      const n = Math.min(a.length, b.length);
      const x = a.subarray(0, n);
      const y = b.subarray(0, n);
      const payload = int8Codec.encode(x);
      assert.equal(payloadProblem(payload), null);
      const { simd, js } = bothPaths(() => {
        const int8Sum = y.slice();
        int8Codec.addTo(payload, int8Sum);
        const fp32Sum = y.slice();
        fp32Codec.addTo({ values: x }, fp32Sum);
        return { int8Sum, fp32Sum };
      });
      assertSameBits(simd.int8Sum, js.int8Sum, 'int8 sums');
      assertSameBits(simd.fp32Sum, js.fp32Sum, 'fp32 sums');
    }),
    { numRuns: 100 },
  );
});

test('the fp32 check finds the first NaN or infinity on both paths, and passes clean vectors', () => {
  fc.assert(
    fc.property(vectors, (v) => {
      const { simd, js } = bothPaths(() => payloadProblem({ values: v }));
      assert.deepEqual(simd, js);
      assert.equal(simd === null, v.every(Number.isFinite));
    }),
    { numRuns: 150 },
  );
});

test('the int8 check finds a -128 anywhere, in whole vectors or the few left over, on both paths', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1024, max: 3000 }), fc.integer(), fc.option(fc.nat()), fc.boolean(), (length, seed, at, inTail) => {
      let s = seed >>> 0;
      const q = Int8Array.from({ length }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % 255) - 127);
      const bad = at === null ? -1 : inTail ? length - 1 - (at % (length % 16 || 1)) : at % length;
      if (bad >= 0) q[bad] = -128;
      const scales = new Float32Array(Math.ceil(length / INT8_BLOCK)).fill(1e-3);
      const { simd, js } = bothPaths(() => payloadProblem({ values: q, scales }));
      assert.deepEqual(simd, js);
      assert.equal(simd?.message ?? null, bad < 0 ? null : `int8 element ${bad} is -128; quanta are -127..127`);
    }),
    { numRuns: 200 },
  );
});

test('the fp32 and fp16 checks look at every element, the last few included, on both paths', () => {
  for (const length of [1024, 1027, 1031, 1041]) {
    for (const bad of [0, 517, length - 4, length - 3, length - 2, length - 1]) {
      const f32 = new Float32Array(length).fill(0.5);
      f32[bad] = -Infinity;
      const f16 = new Uint16Array(length).fill(0x3c00);
      f16[bad] = 0x7e00;
      for (const values of [f32, f16]) {
        const { simd, js } = bothPaths(() => payloadProblem({ values })?.message ?? null);
        assert.equal(simd, js);
        assert.match(simd ?? '', new RegExp(`element ${bad} of ${length}`));
      }
    }
  }
});

test('error feedback and public weights advance step by step to the same bits on both paths', () => {
  fc.assert(
    fc.property(fc.array(finiteVectors, { minLength: 2, maxLength: 4 }), (steps) => {
      const n = Math.min(...steps.map((s) => s.length));
      const { simd, js } = bothPaths(() => {
        const feedback = new ErrorFeedback(int8Codec, n);
        const publicWeights = new PublicWeights(int8Codec, new Float32Array(n));
        const master = new Float32Array(n);
        const sent: EncodedVector[] = [];
        for (const s of steps) {
          const g = s.subarray(0, n);
          sent.push(feedback.encode(g));
          for (let i = 0; i < n; i++) master[i] -= 0.1 * g[i];
          sent.push(publicWeights.advance(master));
        }
        return { sent, residual: feedback.carried!.slice(), weights: publicWeights.weights.slice() };
      });
      simd.sent.forEach((p, i) => {
        assertSameBits(p.values, js.sent[i]!.values, `payload ${i}`);
        assertSameBits(p.scales, js.sent[i]!.scales, `scales ${i}`);
      });
      assertSameBits(simd.residual, js.residual, 'residuals');
      assertSameBits(simd.weights, js.weights, 'public weights');
    }),
    { numRuns: 40 },
  );
});

test('public weights advance in one pass to the payload and weights of subtracting, encoding and adding, rare blocks included', () => {
  const n = 6 * INT8_BLOCK + 100; // a shorter last block
  const start = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.05);
  const master = Float32Array.from(start, (x, i) => x + 1e-3 * Math.cos(3 * i));
  // Block 1: nothing moved. Block 2: nothing moved, over -0 weights (the add makes them +0).
  // Block 3: moved by less than a scale can hold. Block 4: moved by nearly the float32 maximum.
  for (let i = INT8_BLOCK; i < 2 * INT8_BLOCK; i++) master[i] = start[i]!;
  for (let i = 2 * INT8_BLOCK; i < 3 * INT8_BLOCK; i++) start[i] = master[i] = -0;
  for (let i = 3 * INT8_BLOCK; i < 4 * INT8_BLOCK; i++) master[i] = start[i]! === 0 ? 1e-45 : start[i]!, start[i] = 0;
  master[4 * INT8_BLOCK + 7] = 3.4e38;
  const { simd, js } = bothPaths(() => {
    const weights = new PublicWeights(int8Codec, start);
    const payload = weights.advance(master);
    return { payload, weights: weights.weights.slice() };
  });
  assertSameBits(simd.payload.values, js.payload.values, 'quanta');
  assertSameBits(simd.payload.scales, js.payload.scales, 'scales');
  assertSameBits(simd.weights, js.weights, 'public weights');
  assert.ok(Object.is(simd.weights[2 * INT8_BLOCK], 0), 'a -0 weight comes out +0, as addTo makes it');
});

/** Bytes equal, except that any NaN equals any NaN (what a NaN loses is not a number either). */
function assertSameFloats(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) && Number.isNaN(b[i])) continue;
    assert.ok(Object.is(a[i], b[i]), `${what}: element ${i} is ${a[i]} on the SIMD path, ${b[i]} in JavaScript`);
  }
}

test('fp16 encode: the same halves and lost values on both paths', () => {
  fc.assert(
    fc.property(vectors, (v) => {
      const { simd, js } = bothPaths(() => {
        const lost = new Float32Array(v.length);
        return { plain: fp16Codec.encode(v), withLost: fp16Codec.encode(v, lost), lost };
      });
      assertSameBits(simd.plain.values, js.plain.values, 'halves');
      assertSameBits(simd.withLost.values, js.withLost.values, 'halves (with lost)');
      assertSameFloats(simd.lost, js.lost, 'lost values');
    }),
    { numRuns: 150 },
  );
});

test('fp16 addTo adds the same float for every one of the 65,536 half patterns on both paths', () => {
  const all = Uint16Array.from({ length: 65536 }, (_, h) => h);
  const { simd, js } = bothPaths(() => {
    const sum = new Float32Array(65536).fill(0.375);
    fp16Codec.addTo({ values: all }, sum);
    return sum;
  });
  assertSameFloats(simd, js, 'sums');
  // And the finiteness check over every pattern: exactly the 2 x 1024 with all exponent bits set.
  const checks = bothPaths(() => all.filter((h) => payloadProblem({ values: Uint16Array.of(...new Array(1024).fill(0), h) }) !== null).length);
  assert.deepEqual(checks, { simd: 2048, js: 2048 });
});
