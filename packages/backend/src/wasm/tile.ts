/**
 * Tile for the WASM backend. The stock kernel computes every output element's
 * source index in C++ (slow: it is on the path of every BatchNorm gradient,
 * which tiles a [1, 1, 1, C] tensor to the activation shape). This kernel
 * copies the input into the first tile and then replicates blocks with
 * `copyWithin` (memmove on the WASM heap), doubling the copied span, from the
 * innermost axis outwards. Any rank, float32 / int32 / bool; other dtypes go to
 * the stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { type KernelArgs, copyRun, heapView, runStock, sizeOf } from './util.js';

type Typed = Float32Array | Int32Array | Uint8Array;

/** Repeats dst[start, start + len) `reps` times in place (the first copy is already there). */
function replicate(dst: Typed, start: number, len: number, reps: number): void {
  const total = len * reps;
  let filled = len;
  while (filled < total) {
    const n = Math.min(filled, total - filled);
    dst.copyWithin(start + filled, start, start + n);
    filled += n;
  }
}

export function tileArray(src: Typed, dst: Typed, shape: readonly number[], reps: readonly number[]): void {
  const rank = shape.length;
  const outShape = shape.map((d, i) => d * reps[i]);
  const inStrides = new Array<number>(rank);
  const outStrides = new Array<number>(rank);
  let si = 1;
  let so = 1;
  for (let i = rank - 1; i >= 0; i--) {
    inStrides[i] = si;
    outStrides[i] = so;
    si *= shape[i];
    so *= outShape[i];
  }
  // untiled[i]: no axis >= i is repeated, so that block is one contiguous copy.
  const untiled = new Array<boolean>(rank + 1).fill(true);
  for (let i = rank - 1; i >= 0; i--) untiled[i] = untiled[i + 1] && reps[i] === 1;
  // Fills the block of output axis `axis` at (srcOff, dstOff): first the
  // S[axis] input slices, then R[axis]-1 copies of that span.
  const fill = (axis: number, srcOff: number, dstOff: number): void => {
    if (untiled[axis]) {
      copyRun(src, srcOff, dst, dstOff, shape[axis] * inStrides[axis]);
      return;
    }
    if (axis === rank - 1) {
      copyRun(src, srcOff, dst, dstOff, shape[axis]);
    } else {
      for (let i = 0; i < shape[axis]; i++) {
        fill(axis + 1, srcOff + i * inStrides[axis], dstOff + i * outStrides[axis]);
      }
    }
    if (reps[axis] > 1) replicate(dst, dstOff, shape[axis] * outStrides[axis], reps[axis]);
  };
  fill(0, 0, 0);
}

export function tile(args: KernelArgs): tf.TensorInfo {
  const { backend } = args;
  const x = args.inputs.x as tf.TensorInfo;
  const { reps } = args.attrs as unknown as tf.TileAttrs;
  const supported = x.dtype === 'float32' || x.dtype === 'int32' || x.dtype === 'bool';
  if (!supported || x.shape.length === 0 || reps.length !== x.shape.length || sizeOf(x.shape) === 0 || reps.some((r) => r <= 0)) {
    return runStock(tf.Tile, args.inputs, backend, args.attrs);
  }
  const out = backend.makeOutput(
    x.shape.map((d, i) => d * reps[i]),
    x.dtype,
  );
  tileArray(heapView(backend, x), heapView(backend, out), x.shape, reps);
  return out;
}

export const tileConfig: tf.KernelConfig = {
  kernelName: tf.Tile,
  backendName: 'wasm',
  kernelFunc: tile as unknown as tf.KernelFunc,
};
