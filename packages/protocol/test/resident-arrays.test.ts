/**
 * Resident arrays (EmbeddedSimdModule.arena): arrays an owner keeps in an arena of a kernel
 * module, which kernels then use where they lie instead of copying them in and out. They must
 * give the bits the copying path and the JavaScript loops give, also where an output is an
 * input's very array, and stay attached for good (an arena's memory never grows).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { EmbeddedSimdModule, fp16Codec, fp32Codec, int8Codec, residentVectors, setVectorKernelsEnabled, type GradientCodec } from '../src/index.js';
import { VECTOR_KERNELS_WASM } from '../src/simd/module.generated.js';
import { simdSubF32 } from '../src/simd/vector-kernels.js';

const bytesOf = (a: ArrayBufferView | undefined) => (a ? Buffer.from(a.buffer, a.byteOffset, a.byteLength) : Buffer.alloc(0));
const sameBits = (a: ArrayBufferView | undefined, b: ArrayBufferView | undefined) => bytesOf(a).equals(bytesOf(b));

/** Finite, gradient-like vectors long enough for the kernels, of lengths that end mid-vector. */
const vectors = fc.record({ length: fc.integer({ min: 1024, max: 3000 }), seed: fc.integer() }).map(({ length, seed }) => {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  return Float32Array.from({ length }, () => (next() - 0.5) * 10 ** (-6 + 6 * next()));
});

test('a resident operand is used where it lies; others are copied into room after the resident arrays', () => {
  const module = new EmbeddedSimdModule<{ memory: WebAssembly.Memory }>(VECTOR_KERNELS_WASM);
  const arena = module.arena([4 * 2048, 4 * 2048], 4 * 4096);
  assert.equal(arena.resident, true);
  const a = arena.f32(2048);
  const b = arena.f32(2048);
  const outside = new Float32Array(2048).fill(7);
  const r = module.prepare(2048, a, outside, { output: b }, 100);
  assert.ok(r);
  const [, buffer, at, copied, out, room] = r;
  assert.equal(buffer, a.buffer);
  assert.equal(at, a.byteOffset);
  assert.equal(out, b.byteOffset);
  // The copy goes after both resident arrays, and was made.
  assert.ok(copied! >= b.byteOffset + b.byteLength);
  assert.deepEqual(new Float32Array(buffer, copied, 2048), outside);
  assert.ok(room! >= copied! + outside.byteLength);
});

test('an output that overlaps an input where it lies, shifted, is computed elsewhere and copied out', () => {
  const [a] = residentVectors([4096], 4 * 4096);
  const x = Float32Array.from({ length: 4096 }, (_, i) => Math.cos(i));
  a.set(x);
  // out[i] = a[i] - b[i] with out one element past a: in place, the kernel would read values
  // it has already overwritten.
  const input = a.subarray(0, 4000);
  const out = a.subarray(1, 4001);
  const b = new Float32Array(4000).fill(0.5);
  const expected = Float32Array.from(x.subarray(0, 4000), (v, i) => Math.fround(v - b[i]!));
  simdSubF32(input, b, out);
  assert.ok(sameBits(a.subarray(1, 4001), expected));
});

test('an arena never grows: a call that needs more room runs JavaScript, and its arrays stay attached', () => {
  const [sum] = residentVectors([2048], 64);
  const [reference] = [new Float32Array(2048)];
  const values = Float32Array.from({ length: 2048 }, (_, i) => Math.sin(i));
  const buffer = sum.buffer;
  for (let k = 0; k < 3; k++) {
    // An fp32 payload of 8 KiB does not fit in 64 bytes of room: nothing is copied or grown.
    fp32Codec.addTo({ values }, sum);
    const off = setVectorKernelsEnabled(false);
    fp32Codec.addTo({ values }, reference);
    setVectorKernelsEnabled(off);
  }
  assert.equal(sum.buffer, buffer);
  assert.equal(sum.length, 2048);
  assert.ok(sameBits(sum, reference));
});

/** Each codec's encode and add, on resident arrays and on ordinary ones, must agree bit for bit. */
function residentAgrees(codec: GradientCodec, v: Float32Array): void {
  const n = v.length;
  const [values, lost, sum, aliased] = residentVectors([n, n, n, n], 8 * n + 256);
  values.set(v);
  aliased.set(v);
  const plainLost = new Float32Array(n);
  const plainPayload = codec.encode(v.slice(), plainLost);
  const payload = codec.encode(values, lost);
  assert.ok(sameBits(payload.values, plainPayload.values), `${codec.name}: resident values encode differently`);
  assert.ok(sameBits(payload.scales, plainPayload.scales), `${codec.name}: resident scales differ`);
  assert.ok(sameBits(lost, plainLost), `${codec.name}: resident lost values differ`);
  // `lost` may be `values` (the contract): where both lie in the arena, the kernel writes the
  // lost values over the values it has read. (fp32's payload is the values array itself.)
  if (codec.name !== 'fp32') {
    const aliasedPlain = v.slice();
    const aliasedPayload = codec.encode(aliased, aliased);
    codec.encode(aliasedPlain, aliasedPlain);
    assert.ok(sameBits(aliasedPayload.values, codec.encode(v.slice()).values), `${codec.name}: encode in place changed the payload`);
    assert.ok(sameBits(aliased, aliasedPlain), `${codec.name}: lost values (in place) differ`);
  }
  // Added twice, into a resident sum and an ordinary one.
  const plainSum = v.map((x) => x / 3);
  sum.set(plainSum);
  for (let k = 0; k < 2; k++) {
    codec.addTo(plainPayload, sum);
    codec.addTo(plainPayload, plainSum);
  }
  assert.ok(sameBits(sum, plainSum), `${codec.name}: the resident sum differs`);
  const off = setVectorKernelsEnabled(false);
  try {
    const jsSum = v.map((x) => x / 3);
    codec.addTo(plainPayload, jsSum);
    codec.addTo(plainPayload, jsSum);
    assert.ok(sameBits(sum, jsSum), `${codec.name}: the resident sum differs from JavaScript's`);
  } finally {
    setVectorKernelsEnabled(off);
  }
}

test('encoding from and adding into resident arrays gives the bits of ordinary arrays and of JavaScript, for every codec', () => {
  fc.assert(
    fc.property(vectors, (v) => {
      for (const codec of [int8Codec, fp16Codec, fp32Codec]) residentAgrees(codec, v);
    }),
    { numRuns: 40 },
  );
});

test('with the kernels off, resident arrays are ordinary arrays', () => {
  const module = new EmbeddedSimdModule<{ memory: WebAssembly.Memory }>(VECTOR_KERNELS_WASM);
  module.setEnabled(false);
  const arena = module.arena([4096], 0);
  assert.equal(arena.resident, false);
  assert.equal(arena.f32(1024).buffer.byteLength, 4096);
  const off = setVectorKernelsEnabled(false);
  try {
    // An array of its own, not a view of a module's memory (at least a 64 KiB page).
    const [a] = residentVectors([1024], 0);
    assert.equal(a.buffer.byteLength, 4096);
  } finally {
    setVectorKernelsEnabled(off);
  }
});

test('an arena refuses to hand out more than it holds', () => {
  const module = new EmbeddedSimdModule<{ memory: WebAssembly.Memory }>(VECTOR_KERNELS_WASM);
  const arena = module.arena([4 * 1024], 0);
  arena.f32(1024);
  assert.throws(() => arena.f32(1), /bytes more than the 0 left/);
});
