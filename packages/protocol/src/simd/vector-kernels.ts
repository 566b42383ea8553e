/**
 * The codecs' hot loops in WebAssembly SIMD (assembly/vector-kernels.ts): summing gradients,
 * applying deltas, checking floats and int8 quantisation, 4-10x faster than the JavaScript
 * loops at resnet20v2 size. Each function here gives the same bits as the JavaScript it stands
 * in for (test/vector-kernels.test.ts compares them; NaN payload bits aside, in payloads that
 * validation refuses), so peers with and without SIMD agree.
 * Each returns false (or null), having done nothing, where the module cannot run (see
 * EmbeddedSimdModule.prepare); the caller then runs its JavaScript loop.
 */
import { EmbeddedSimdModule, ResidentArrays, copyOut, type KernelOperand } from './embedded-module.js';
import { VECTOR_KERNELS_WASM } from './module.generated.js';
import { INT8_BLOCK } from '../gradient-codec.js';

interface VectorKernelExports {
  memory: WebAssembly.Memory;
  addF32(src: number, dst: number, n: number): void;
  subF32(a: number, b: number, out: number, n: number): void;
  anyNonFiniteF32(src: number, n: number): number;
  addI8(q: number, scales: number, dst: number, n: number): void;
  quantizeI8(values: number, minus: number, q: number, scales: number, lost: number, n: number): void;
  addF16(bits: number, dst: number, n: number): void;
  anyNonFiniteF16(bits: number, n: number): number;
  anyI8Min(q: number, n: number): number;
  encodeF16(values: number, out: number, lost: number, n: number): void;
}

const vectorKernels = new EmbeddedSimdModule<VectorKernelExports>(VECTOR_KERNELS_WASM);
const prepare = (n: number, ...operands: KernelOperand[]) => vectorKernels.prepare(n, ...operands);

/**
 * Float32 arrays of `lengths` resident in an arena of the codec kernels (see EmbeddedSimdModule),
 * with room to copy in `scratchBytes` of operands: for an owner that hands the same arrays to
 * these kernels step after step (a batch sum, public weights, an error-feedback residual).
 */
export function residentVectors(lengths: readonly number[], scratchBytes: number): Float32Array<ArrayBuffer>[] {
  const arena: ResidentArrays = vectorKernels.arena(lengths.map((n) => 4 * n), scratchBytes);
  return lengths.map((n) => arena.f32(n));
}

/** Whether the SIMD kernels run on this engine (WebAssembly SIMD present and not turned off). */
export function vectorKernelsAvailable(): boolean {
  return vectorKernels.available;
}

/** Turns the SIMD kernels off or on (tests and benchmarks compare both paths); returns the previous setting. */
export function setVectorKernelsEnabled(on: boolean): boolean {
  return vectorKernels.setEnabled(on);
}

/**
 * dst += what `kernel` adds from `operands` (the payload's arrays, in order): the sum is the
 * last operand, the kernel gets every offset and the length, and the sum comes back (unless
 * it is resident, and was added to where it lies).
 */
function addIntoSum(dst: Float32Array, operands: ArrayBufferView[], kernel: (k: VectorKernelExports, offsets: number[], n: number) => void): boolean {
  const n = dst.length;
  const r = prepare(n, ...operands, dst);
  if (!r) return false;
  const [k, buffer, ...offsets] = r;
  kernel(k, offsets, n);
  copyOut(buffer, offsets.at(-1)!, dst);
  return true;
}

/** dst[i] += src[i], float32. */
export function simdAddF32(src: Float32Array, dst: Float32Array): boolean {
  return addIntoSum(dst, [src], (k, [s, d], n) => k.addF32(s!, d!, n));
}

/** out[i] = a[i] - b[i], float32. */
export function simdSubF32(a: Float32Array, b: Float32Array, out: Float32Array): boolean {
  const n = out.length;
  const r = prepare(n, a.subarray(0, n), b.subarray(0, n), { output: out });
  if (!r) return false;
  const [k, buffer, x, y, o] = r;
  k.subF32(x!, y!, o!, n);
  copyOut(buffer, o!, out);
  return true;
}

/**
 * Copies `values` in and runs a kernel that scans them, `lanes` at a time (the kernels take
 * whole vectors only, which keeps the module under 4 KiB); `hitAt` tests the few left over.
 * Null where the JavaScript scan must run.
 */
function anyIn<T extends Float32Array | Uint16Array | Int8Array>(values: T, lanes: number, kernel: (k: VectorKernelExports, offset: number, n: number) => number, hitAt: (values: T, i: number) => boolean): boolean | null {
  const r = prepare(values.length, values);
  if (!r) return null;
  const [k, , offset] = r;
  const whole = values.length - (values.length % lanes);
  if (kernel(k, offset!, whole) !== 0) return true;
  for (let i = whole; i < values.length; i++) if (hitAt(values, i)) return true;
  return false;
}

/** Whether any value is NaN or infinite; null where the JavaScript scan must run. */
export function simdAnyNonFinite(values: Float32Array): boolean | null {
  return anyIn(values, 4, (k, offset, n) => k.anyNonFiniteF32(offset, n), (v, i) => !Number.isFinite(v[i]));
}

/** Whether any int8 is -128, which no quantum is; null where the JavaScript scan must run. */
export function simdAnyI8Min(q: Int8Array): boolean | null {
  return anyIn(q, 16, (k, offset, n) => k.anyI8Min(offset, n), (v, i) => v[i] === -128);
}

/** dst[i] += float32(q[i] x scales[i / block]). */
export function simdAddI8(q: Int8Array, scales: Float32Array, dst: Float32Array): boolean {
  return addIntoSum(dst, [q, scales], (k, [qo, so, d], n) => k.addI8(qo!, so!, d!, n));
}

/**
 * int8 quantisation (see quantizeI8 in assembly/vector-kernels.ts) into `q` and `scales`, and
 * what it loses into `lost` (may be `values`). Blocks the kernel leaves to JavaScript (a NaN,
 * an infinity, a zero or underflowing or near-overflowing scale) come back with their scale as
 * max|x| / 127 and their quanta zero; a last block shorter than INT8_BLOCK comes back with
 * scale 0, quanta zero and its `lost` untouched (the kernel takes whole blocks only, which
 * keeps the module under 4 KiB). The caller finishes those.
 */
export function simdQuantizeI8(values: Float32Array, q: Int8Array, scales: Float32Array, lost: Float32Array | null): boolean {
  return quantizeWholeBlocks(values, null, q, scales, lost);
}

/**
 * The int8 advance of public weights `pub` toward `master` in one pass (see quantizeI8 in
 * assembly/vector-kernels.ts): q and scales encode float32(master - pub), and pub takes what
 * they decode to, the bits of subtracting, encoding and adding in three passes. Blocks the
 * kernel leaves to JavaScript (as simdQuantizeI8's, the shorter last block included) come back
 * with quanta zero and `pub` untouched there. False (nothing done) where JavaScript must run.
 */
export function simdAdvanceI8(master: Float32Array, pub: Float32Array, q: Int8Array, scales: Float32Array): boolean {
  return quantizeWholeBlocks(master, pub, q, scales, null);
}

/** quantizeI8 over the whole blocks of `values` (less `minus`, which takes the quanta back); the rest zeroed. */
function quantizeWholeBlocks(values: Float32Array, minus: Float32Array | null, q: Int8Array, scales: Float32Array, lost: Float32Array | null): boolean {
  const whole = values.length - (values.length % INT8_BLOCK);
  const blocks = whole / INT8_BLOCK;
  const head = <T extends Float32Array | Int8Array>(a: T, length = whole) => a.subarray(0, length) as T;
  // `minus` first, so that the call runs in its arena (the public weights') where it has one.
  const r = prepare(whole, minus ? head(minus) : 0, head(values), { output: head(q) }, { output: head(scales, blocks) }, lost ? { output: head(lost) } : 0);
  if (!r) return false;
  const [k, buffer, mo, v, qo, so, lo] = r;
  k.quantizeI8(v!, minus ? mo! : 0, qo!, so!, lost ? lo! : 0, whole);
  if (minus) copyOut(buffer, mo!, head(minus));
  copyOut(buffer, qo!, head(q));
  copyOut(buffer, so!, head(scales, blocks));
  if (lost) copyOut(buffer, lo!, head(lost));
  q.fill(0, whole);
  scales.fill(0, blocks);
  return true;
}

/** dst[i] += the float32 value of the half bits[i]. */
export function simdAddF16(bits: Uint16Array, dst: Float32Array): boolean {
  return addIntoSum(dst, [bits], (k, [b, d], n) => k.addF16(b!, d!, n));
}

/** Whether any half is infinite or NaN; null where the JavaScript scan must run. */
export function simdAnyNonFiniteHalf(bits: Uint16Array): boolean | null {
  return anyIn(bits, 8, (k, offset, n) => k.anyNonFiniteF16(offset, n), (v, i) => (v[i]! & 0x7c00) === 0x7c00);
}

/** The halves of `values` into `out`, and what they lose into `lost` (may be `values`). */
export function simdEncodeF16(values: Float32Array, out: Uint16Array, lost: Float32Array | null): boolean {
  const n = values.length;
  const r = prepare(n, values, { output: out }, lost ? { output: lost } : 0);
  if (!r) return false;
  const [k, buffer, v, o, lo] = r;
  k.encodeF16(v!, o!, lost ? lo! : 0, n);
  copyOut(buffer, o!, out);
  if (lost) copyOut(buffer, lo!, lost);
  return true;
}
