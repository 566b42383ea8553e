/**
 * Shared helpers for the Chorus WASM training kernels.
 *
 * The kernels in this folder compose stock tfjs-backend-wasm kernels (called
 * through their `kernelFunc`) with plain data movement done in JavaScript on
 * views of the WASM heap (the same technique the stock `Slice` and `Concat`
 * kernels use). Every intermediate `TensorInfo` a kernel creates is released
 * with `backend.disposeData` before the kernel returns.
 */
import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { pointer, simdKernels, simdPathsEnabled } from './simd/module.js';

export type { BackendWasm };

/** Arguments every kernel function receives. */
export interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
}

/**
 * Stock kernel configs, saved by `registerWasmTrainingKernels` before it
 * unregisters them. Kernels use them to call the original implementation.
 */
const stockKernels = new Map<string, tf.KernelConfig>();

export function saveStockKernel(config: tf.KernelConfig): void {
  stockKernels.set(config.kernelName, config);
}

export function getSavedStockKernel(kernelName: string): tf.KernelConfig | undefined {
  return stockKernels.get(kernelName);
}

/**
 * Runs the stock (tfjs-backend-wasm) implementation of `kernelName`. Falls
 * back to whatever is registered when nothing was saved (i.e. the kernel was
 * never replaced).
 */
export function runStock(
  kernelName: string,
  inputs: tf.NamedTensorInfoMap,
  backend: BackendWasm,
  attrs: tf.NamedAttrMap = {},
): tf.TensorInfo {
  const config = stockKernels.get(kernelName) ?? tf.getKernel(kernelName, 'wasm');
  if (config == null) {
    throw new Error(`@chorus/backend: no wasm kernel ${kernelName} to fall back to`);
  }
  return config.kernelFunc({ inputs, backend, attrs }) as tf.TensorInfo;
}

/** Float32 view of a tensor's data on the WASM heap (invalidated by heap growth). */
export function f32(backend: BackendWasm, info: tf.TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(info) as Float32Array;
}

/** Typed view of a tensor's data on the WASM heap (float32, int32 or bool). */
export function heapView(backend: BackendWasm, info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array {
  return backend.typedArrayFromHeap(info) as Float32Array | Int32Array | Uint8Array;
}

/** Same data, different shape; no data id is created (do not dispose it). */
export function view(info: tf.TensorInfo, shape: number[]): tf.TensorInfo {
  return { dataId: info.dataId, shape, dtype: info.dtype };
}

export function disposeAll(backend: BackendWasm, infos: Array<tf.TensorInfo | null | undefined>): void {
  for (const info of infos) {
    if (info != null) backend.disposeData(info.dataId);
  }
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

type Typed = Float32Array | Int32Array | Uint8Array;

/** Copies `n` elements; `set(subarray)` for long runs, a loop for short ones. */
export function copyRun(src: Typed, srcOff: number, dst: Typed, dstOff: number, n: number): void {
  if (n >= 24) {
    dst.set(src.subarray(srcOff, srcOff + n), dstOff);
  } else {
    for (let i = 0; i < n; i++) dst[dstOff + i] = src[srcOff + i];
  }
}

/**
 * Iterates over every index of the given axes (sizes, and strides into source
 * and destination) calling `body(srcOffset, dstOffset)`; the last axis varies fastest.
 */
export function forEachIndex(sizes: number[], sStrides: number[], dStrides: number[], body: (s: number, d: number) => void): void {
  const n = sizes.length;
  if (n === 0) {
    body(0, 0);
    return;
  }
  if (sizes.some((d) => d === 0)) return;
  const idx = new Array<number>(n).fill(0);
  let s = 0;
  let d = 0;
  for (;;) {
    body(s, d);
    let k = n - 1;
    for (; k >= 0; k--) {
      idx[k]++;
      s += sStrides[k];
      d += dStrides[k];
      if (idx[k] < sizes[k]) break;
      s -= sStrides[k] * sizes[k];
      d -= dStrides[k] * sizes[k];
      idx[k] = 0;
    }
    if (k < 0) return;
  }
}

const BLOCK = 32;

/**
 * Strided 2-D transpose: dst[dOff + c * dRow + r] = src[sOff + r * sRow + c]
 * for r < rows, c < cols. Blocked over rows so that reads stay in cache.
 */
export function transpose2d(
  src: Typed,
  sOff: number,
  sRow: number,
  dst: Typed,
  dOff: number,
  dRow: number,
  rows: number,
  cols: number,
): void {
  if (cols === 1) {
    for (let r = 0; r < rows; r++) dst[dOff + r] = src[sOff + r * sRow];
    return;
  }
  if (rows === 1) {
    for (let c = 0; c < cols; c++) dst[dOff + c * dRow] = src[sOff + c];
    return;
  }
  for (let r0 = 0; r0 < rows; r0 += BLOCK) {
    const r1 = r0 + BLOCK < rows ? r0 + BLOCK : rows;
    for (let c = 0; c < cols; c++) {
      let o = dOff + c * dRow + r0;
      let i = sOff + r0 * sRow + c;
      for (let r = r0; r < r1; r++) {
        dst[o++] = src[i];
        i += sRow;
      }
    }
  }
}

/**
 * `a[M, K] x b[K, N]` with the stock BatchMatMul kernel and no transpose
 * flags, which is the only orientation the stock kernel runs on XNNPACK.
 * XNNPACK caches the packed `b` per data id, so `b` should be an intermediate
 * owned by the caller (disposed right after), never a tensor that could later
 * be used as `b` again with another shape.
 */
export function matMul2d(backend: BackendWasm, a: tf.TensorInfo, b: tf.TensorInfo, m: number, k: number, n: number): tf.TensorInfo {
  const out = runStock('BatchMatMul', { a: view(a, [1, m, k]), b: view(b, [1, k, n]) }, backend, {
    transposeA: false,
    transposeB: false,
  });
  return view(out, [m, n]);
}

/** A reduction over one contiguous block of axes, seen as [outer, reduce, inner]. */
export interface MiddleAxisReduction {
  outer: number;
  reduce: number;
  inner: number;
  outShape: number[];
}

/**
 * Plans a Sum/Mean over `axis` as a reduction over the middle axis of
 * [outer, reduce, inner]. Returns null where the stock kernel needs no
 * transpose (the reduced axes are innermost) or where the reduced axes are
 * not one contiguous block, and for empty tensors.
 */
export function middleAxisReduction(shape: number[], axis: number | number[], keepDims: boolean): MiddleAxisReduction | null {
  if (shape.length === 0 || sizeOf(shape) === 0) return null;
  const axes = [...new Set(tf.util.parseAxisParam(axis, shape))].sort((a, b) => a - b);
  if (axes.length === 0) return null;
  const first = axes[0];
  const last = axes[axes.length - 1];
  if (last - first + 1 !== axes.length) return null;
  const inner = sizeOf(shape.slice(last + 1));
  if (inner === 1) return null;
  const [outShape] = tf.backend_util.computeOutAndReduceShapes(shape, axes);
  return {
    outer: sizeOf(shape.slice(0, first)),
    reduce: sizeOf(shape.slice(first, last + 1)),
    inner,
    outShape: keepDims ? tf.backend_util.expandShapeToKeepDim(outShape, axes) : outShape,
  };
}

/** dst[o, c] = scale * sum_r src[o, r, c], accumulated in float64 (four rows per pass). */
export function reduceMiddleAxis(src: Float32Array, dst: Float32Array, outer: number, reduce: number, inner: number, scale: number): void {
  const acc = new Float64Array(inner);
  for (let o = 0; o < outer; o++) {
    acc.fill(0);
    let off = o * reduce * inner;
    let r = 0;
    for (; r + 4 <= reduce; r += 4) {
      const o1 = off + inner;
      const o2 = o1 + inner;
      const o3 = o2 + inner;
      for (let c = 0; c < inner; c++) acc[c] += src[off + c] + src[o1 + c] + (src[o2 + c] + src[o3 + c]);
      off += 4 * inner;
    }
    for (; r < reduce; r++) {
      for (let c = 0; c < inner; c++) acc[c] += src[off + c];
      off += inner;
    }
    const d = o * inner;
    for (let c = 0; c < inner; c++) dst[d + c] = acc[c] * scale;
  }
}

/**
 * out = scale * (x summed over the middle axis of `plan`): the WebAssembly SIMD kernel where it
 * runs (f32 chunks of 64 rows added in f64), else reduceMiddleAxis in JS (f64 throughout).
 */
export function reduceMiddle(backend: BackendWasm, x: tf.TensorInfo, out: tf.TensorInfo, plan: MiddleAxisReduction, scale: number): void {
  const simd = simdPathsEnabled() ? simdKernels(backend) : null;
  if (simd == null) {
    reduceMiddleAxis(f32(backend, x), f32(backend, out), plan.outer, plan.reduce, plan.inner, scale);
    return;
  }
  const scratch = backend.makeOutput([3 * plan.inner], 'float32');
  simd.sumMiddleAxis(pointer(backend, x), pointer(backend, out), plan.outer, plan.reduce, plan.inner, scale, pointer(backend, scratch));
  backend.disposeData(scratch.dataId);
}
