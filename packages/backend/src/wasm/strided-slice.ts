/**
 * StridedSlice for the WASM backend. Identity and contiguous slices already
 * take fast paths in the stock kernel (reshape / Slice), so they still go
 * there; real strided slices (e.g. x[:, ::2, ::2, :]) run a per-element C++
 * loop in the stock kernel and are gathered here in JS on the WASM heap
 * instead: contiguous runs along the innermost axis when its stride is 1,
 * a strided loop otherwise (negative strides included). Masks, ellipsis,
 * new and shrunk axes are resolved by `slice_util.sliceInfo`, exactly like the
 * stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { type KernelArgs, copyRun, forEachIndex, heapView, runStock, sizeOf } from './util.js';

export function stridedSlice(args: KernelArgs): tf.TensorInfo {
  const { backend } = args;
  const x = args.inputs.x as tf.TensorInfo;
  const { begin, end, strides, beginMask, endMask, ellipsisMask, newAxisMask, shrinkAxisMask } =
    args.attrs as unknown as tf.StridedSliceAttrs;
  const supported = x.dtype === 'float32' || x.dtype === 'int32' || x.dtype === 'bool';
  if (!supported) return runStock(tf.StridedSlice, args.inputs, backend, args.attrs);
  const info = tf.slice_util.sliceInfo(x.shape, begin, end, strides, beginMask, endMask, ellipsisMask, newAxisMask, shrinkAxisMask);
  const rank = x.shape.length;
  // Per input axis output sizes (shrunk axes have size 1). Note that
  // info.finalShapeSparse omits shrunk axes, so it cannot be used here.
  const sizes = info.begin.map((b, i) => Math.max(0, Math.ceil((info.end[i] - b) / info.strides[i])));
  if (info.isIdentity || info.sliceDim0 || info.isSimpleSlice || sizeOf(sizes) === 0 || sizeOf(sizes) !== sizeOf(info.finalShape)) {
    return runStock(tf.StridedSlice, args.inputs, backend, args.attrs);
  }
  const xStrides = new Array<number>(rank);
  let acc = 1;
  for (let i = rank - 1; i >= 0; i--) {
    xStrides[i] = acc;
    acc *= x.shape[i];
  }
  const outStrides = new Array<number>(rank);
  acc = 1;
  for (let i = rank - 1; i >= 0; i--) {
    outStrides[i] = acc;
    acc *= sizes[i];
  }
  let base = 0;
  for (let i = 0; i < rank; i++) base += info.begin[i] * xStrides[i];
  const steps = info.strides.map((s, i) => s * xStrides[i]);

  const out = backend.makeOutput(info.finalShape, x.dtype);
  const src = heapView(backend, x);
  const dst = heapView(backend, out);
  const inner = sizes[rank - 1];
  const innerStep = steps[rank - 1];
  forEachIndex(sizes.slice(0, rank - 1), steps.slice(0, rank - 1), outStrides.slice(0, rank - 1), (s, d) => {
    const so = base + s;
    if (innerStep === 1) {
      copyRun(src, so, dst, d, inner);
    } else {
      for (let j = 0; j < inner; j++) dst[d + j] = src[so + j * innerStep];
    }
  });
  return out;
}

export const stridedSliceConfig: tf.KernelConfig = {
  kernelName: tf.StridedSlice,
  backendName: 'wasm',
  kernelFunc: stridedSlice as unknown as tf.KernelFunc,
};
