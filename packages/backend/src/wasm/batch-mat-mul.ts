/**
 * BatchMatMul for the WASM backend. The stock kernel runs on XNNPACK only
 * when neither operand is transposed and both batch sizes are 1; with
 * transposeA / transposeB (every matMul gradient, e.g. Dense layers) it uses a
 * naive blocked loop with strided reads. Here the flagged operand is
 * transposed in JS (cache-blocked) into a new tensor and the stock kernel then
 * runs unflagged on XNNPACK. Batched (batch > 1) products, non-float32 inputs
 * and unflagged products go to the stock kernel unchanged.
 */
import * as tf from '@tensorflow/tfjs';
import { type KernelArgs, disposeAll, f32, matMul2d, runStock, sizeOf, transpose2d, view } from './util.js';

export function batchMatMul(args: KernelArgs): tf.TensorInfo {
  const { backend } = args;
  const a = args.inputs.a as tf.TensorInfo;
  const b = args.inputs.b as tf.TensorInfo;
  const { transposeA, transposeB } = args.attrs as unknown as tf.BatchMatMulAttrs;
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  if (
    (!transposeA && !transposeB) ||
    a.dtype !== 'float32' ||
    b.dtype !== 'float32' ||
    aRank < 2 ||
    bRank < 2 ||
    sizeOf(a.shape.slice(0, -2)) !== 1 ||
    sizeOf(b.shape.slice(0, -2)) !== 1 ||
    sizeOf(a.shape) === 0 ||
    sizeOf(b.shape) === 0
  ) {
    return runStock(tf.BatchMatMul, args.inputs, backend, args.attrs);
  }
  const m = transposeA ? a.shape[aRank - 1] : a.shape[aRank - 2];
  const k = transposeA ? a.shape[aRank - 2] : a.shape[aRank - 1];
  const kB = transposeB ? b.shape[bRank - 1] : b.shape[bRank - 2];
  const n = transposeB ? b.shape[bRank - 2] : b.shape[bRank - 1];
  if (k !== kB) {
    // Let the stock kernel produce its usual error message.
    return runStock(tf.BatchMatMul, args.inputs, backend, args.attrs);
  }
  let aT: tf.TensorInfo | null = null;
  let bT: tf.TensorInfo | null = null;
  if (transposeA) {
    aT = backend.makeOutput([m, k], 'float32');
    transpose2d(f32(backend, a), 0, m, f32(backend, aT), 0, k, k, m);
  }
  if (transposeB) {
    bT = backend.makeOutput([k, n], 'float32');
    transpose2d(f32(backend, b), 0, k, f32(backend, bT), 0, n, n, k);
  }
  const out = matMul2d(backend, aT ?? a, bT ?? b, m, k, n);
  disposeAll(backend, [aT, bT]);
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  return view(out, [...outer, m, n]);
}

export const batchMatMulConfig: tf.KernelConfig = {
  kernelName: tf.BatchMatMul,
  backendName: 'wasm',
  kernelFunc: batchMatMul as unknown as tf.KernelFunc,
};
