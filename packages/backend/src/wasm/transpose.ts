/**
 * Transpose for the WASM backend.
 *
 * The stock kernel has hand-written 2-D/3-D/4-D loops and a generic N-D loop
 * that converts every element index to a location vector and back (very slow).
 * This kernel first drops size-1 axes and merges axes that stay adjacent
 * under the permutation (as XNNPACK/TFLite do). If the result still has rank
 * > 4 it transposes in JS on the WASM heap: contiguous runs are copied when the
 * innermost axis stays innermost, otherwise a cache-blocked 2-D transpose of the
 * two innermost axes runs for every index of the remaining axes. Rank <= 4
 * (after merging) and string tensors go to the stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { type BackendWasm, type KernelArgs, copyRun, forEachIndex, heapView, runStock, sizeOf, transpose2d } from './util.js';

/** Drops size-1 axes and merges axes that are adjacent both before and after the permutation. */
export function simplifyTranspose(shape: readonly number[], perm: readonly number[]): { shape: number[]; perm: number[] } {
  const keep: number[] = [];
  for (let i = 0; i < shape.length; i++) if (shape[i] !== 1) keep.push(i);
  // Permutation restricted to the kept axes, renumbered.
  const rank = new Map<number, number>();
  keep.forEach((axis, i) => rank.set(axis, i));
  const sShape = keep.map((a) => shape[a]);
  const sPerm = perm.filter((a) => shape[a] !== 1).map((a) => rank.get(a) as number);
  if (sPerm.length === 0) return { shape: [], perm: [] };
  // Group runs of consecutive input axes in output order.
  const groups: number[][] = [];
  for (const a of sPerm) {
    const last = groups[groups.length - 1];
    if (last != null && last[last.length - 1] + 1 === a) last.push(a);
    else groups.push([a]);
  }
  // Order groups by their first input axis to get the merged input shape.
  const byInput = [...groups].sort((g1, g2) => g1[0] - g2[0]);
  const mergedShape = byInput.map((g) => g.reduce((n, a) => n * sShape[a], 1));
  const index = new Map<number[], number>();
  byInput.forEach((g, i) => index.set(g, i));
  const mergedPerm = groups.map((g) => index.get(g) as number);
  return { shape: mergedShape, perm: mergedPerm };
}

type Typed = Float32Array | Int32Array | Uint8Array;

function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Transposes `src` (shape `shape`) into `dst` by `perm`; both are plain element arrays. */
export function transposeArray(src: Typed, dst: Typed, shape: readonly number[], perm: readonly number[]): void {
  const { shape: s, perm: p } = simplifyTranspose(shape, perm);
  const r = s.length;
  if (r <= 1) {
    dst.set(src.subarray(0, sizeOf(shape)));
    return;
  }
  const inStrides = stridesOf(s);
  const outShape = p.map((a) => s[a]);
  const outStrides = stridesOf(outShape);
  const outPos = new Array<number>(r);
  p.forEach((a, i) => (outPos[a] = i));
  if (p[r - 1] === r - 1) {
    // Innermost axis stays innermost: copy contiguous runs.
    const run = s[r - 1];
    const axes = p.slice(0, r - 1);
    forEachIndex(
      axes.map((a) => s[a]),
      axes.map((a) => inStrides[a]),
      axes.map((a) => outStrides[outPos[a]]),
      (so, d) => copyRun(src, so, dst, d, run),
    );
    return;
  }
  // 2-D tiles of (input axis that becomes innermost) x (input innermost axis).
  const a = p[r - 1];
  const last = r - 1;
  const axes = p.filter((ax) => ax !== a && ax !== last);
  const rows = s[a];
  const cols = s[last];
  const sRow = inStrides[a];
  const dRow = outStrides[outPos[last]];
  forEachIndex(
    axes.map((ax) => s[ax]),
    axes.map((ax) => inStrides[ax]),
    axes.map((ax) => outStrides[outPos[ax]]),
    (so, d) => transpose2d(src, so, sRow, dst, d, dRow, rows, cols),
  );
}

/** Transposes a WASM tensor in JS into a new tensor (caller owns the result). */
export function transposeInfo(backend: BackendWasm, x: tf.TensorInfo, perm: readonly number[]): tf.TensorInfo {
  const out = backend.makeOutput(
    perm.map((a) => x.shape[a]),
    x.dtype,
  );
  if (sizeOf(x.shape) > 0) transposeArray(heapView(backend, x), heapView(backend, out), x.shape, perm);
  return out;
}

export function transpose(args: KernelArgs): tf.TensorInfo {
  const { backend } = args;
  const x = args.inputs.x as tf.TensorInfo;
  const { perm } = args.attrs as unknown as tf.TransposeAttrs;
  const supported = x.dtype === 'float32' || x.dtype === 'int32' || x.dtype === 'bool';
  if (!supported || sizeOf(x.shape) === 0 || simplifyTranspose(x.shape, perm).shape.length <= 4) {
    return runStock(tf.Transpose, args.inputs, backend, args.attrs);
  }
  return transposeInfo(backend, x, perm);
}

export const transposeConfig: tf.KernelConfig = {
  kernelName: tf.Transpose,
  backendName: 'wasm',
  kernelFunc: transpose as unknown as tf.KernelFunc,
};
