/**
 * The master state's WebAssembly SIMD kernels (assembly/master-kernels.ts) give the bits of the
 * JavaScript loops they stand in for: the SGD step in float64 as JavaScript computes it, and the
 * batch mean. Each property runs both paths on the same arrays and compares bytes.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import fc from 'fast-check';
import { PRESETS, buildGraph, weightLayout, type WeightLayout } from '@chorus/model';
import { createSgd, masterKernelsAvailable, setMasterKernelsEnabled, simdMean } from '../src/core.js';
import { MASTER_KERNELS_WASM } from '../src/simd/module.generated.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

test('src/simd/module.generated.ts is what scripts/build-wasm.mjs builds from assembly/master-kernels.ts', () => {
  execFileSync(process.execPath, [join(root, 'scripts/build-wasm.mjs'), '--check'], { stdio: 'pipe' });
});

test('the module imports nothing and runs here', () => {
  assert.deepEqual(WebAssembly.Module.imports(new WebAssembly.Module(Buffer.from(MASTER_KERNELS_WASM, 'base64'))), []);
  assert.equal(masterKernelsAvailable(), true);
});

function bothPaths<T>(f: () => T): { simd: T; js: T } {
  const previous = setMasterKernelsEnabled(true);
  try {
    const simd = f();
    setMasterKernelsEnabled(false);
    return { simd, js: f() };
  } finally {
    setMasterKernelsEnabled(previous);
  }
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Weight-, gradient- and velocity-like vectors over many magnitudes, signs and zeros (-0 too). */
const vector = (length: number, seed: number, scale: number) => {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  return Float32Array.from({ length }, (_, i) => (i % 53 === 0 ? (i % 2 ? -0 : 0) : (next() < 0.5 ? -1 : 1) * scale * 10 ** (-6 * next())));
};

/**
 * A layout of parameters of awkward sizes, decayed or not at random: decay boundaries fall
 * anywhere inside the kernel's groups of four (a real model's mostly fall on multiples of four).
 */
const layouts = fc.array(fc.record({ size: fc.integer({ min: 1, max: 37 }), decay: fc.boolean() }), { minLength: 40, maxLength: 120 }).map((parts) => {
  let offset = 0;
  const params = parts.map((p) => ({ ...p, offset: (offset += p.size) - p.size }));
  return { paramCount: offset, params } as unknown as WeightLayout;
});

test('SGD (momentum, Nesterov or not, weight decay by mask): the same weights and velocity on both paths, step after step', () => {
  // And the real model's layout once.
  const real = weightLayout(buildGraph(PRESETS.tiny));
  fc.assert(
    fc.property(
      fc.oneof(layouts, fc.constant(real)),
      fc.integer(),
      fc.double({ min: 1e-4, max: 1, noNaN: true }),
      fc.constantFrom(0, 0.5, 0.9),
      fc.boolean(),
      fc.constantFrom(0, 5e-4, 1e-2),
      (layout, seed, lr, momentum, nesterov, weightDecay) => {
        const n = layout.paramCount;
        const { simd, js } = bothPaths(() => {
          const optimizer = createSgd(layout, { momentum, nesterov, weightDecay });
          const params = vector(n, seed, 1);
          for (let step = 0; step < 3; step++) optimizer.apply(params, vector(n, seed + step + 1, 0.1), lr);
          return { params, velocity: optimizer.state().slots[0]! };
        });
        assert.ok(bytes(simd.params).equals(bytes(js.params)), 'weights differ between the paths');
        assert.ok(bytes(simd.velocity).equals(bytes(js.velocity)), 'velocities differ between the paths');
      },
    ),
    { numRuns: 80 },
  );
});

test('the batch mean: the same floats on both paths', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1024, max: 5000 }), fc.integer(), fc.integer({ min: 1, max: 4096 }), (n, seed, count) => {
      const sum = vector(n, seed, 1000);
      const { simd, js } = bothPaths(() => {
        const out = new Float32Array(n);
        if (!simdMean(sum, count, out)) for (let i = 0; i < n; i++) out[i] = sum[i] / count;
        return out;
      });
      assert.ok(bytes(simd).equals(bytes(js)));
    }),
    { numRuns: 60 },
  );
});
