/**
 * Sum for the WASM backend. The stock kernel moves the reduced axes innermost
 * with a full Transpose before reducing; for the reductions on a training
 * step's backward path (BatchNorm gradients: sum over [0, 1, 2] of an NHWC
 * tensor) that transpose dominates. When the reduced axes form one contiguous
 * block followed by a non-reduced axis, the tensor is viewed as
 * [outer, reduced, inner] and summed over the middle axis on the WASM heap
 * (a WebAssembly SIMD kernel, or row-wise in JS with float64 accumulators
 * where SIMD is missing). Other reductions and non-float32 inputs go to the
 * stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { type KernelArgs, middleAxisReduction, reduceMiddle, runStock } from './util.js';

export function sum(args: KernelArgs): tf.TensorInfo {
  const { backend } = args;
  const x = args.inputs.x as tf.TensorInfo;
  const { axis, keepDims } = args.attrs as unknown as tf.SumAttrs;
  const plan = x.dtype === 'float32' ? middleAxisReduction(x.shape, axis, keepDims) : null;
  if (plan == null) return runStock(tf.Sum, args.inputs, backend, args.attrs);
  const out = backend.makeOutput(plan.outShape, 'float32');
  reduceMiddle(backend, x, out, plan, 1);
  return out;
}

export const sumConfig: tf.KernelConfig = {
  kernelName: tf.Sum,
  backendName: 'wasm',
  kernelFunc: sum as unknown as tf.KernelFunc,
};
