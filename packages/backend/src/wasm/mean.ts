/**
 * Mean for the WASM backend: like `sum.ts` (the stock kernel transposes the
 * reduced axes innermost first, which dominates the batch-moment reductions
 * over [0, 1, 2] of NHWC activations); contiguous leading/middle reductions
 * are computed on the WASM heap (util.ts reduceMiddle: SIMD, or JS with
 * float64 accumulators), everything else (and non-float32 inputs) goes to
 * the stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { type KernelArgs, middleAxisReduction, reduceMiddle, runStock } from './util.js';

export function mean(args: KernelArgs): tf.TensorInfo {
  const { backend } = args;
  const x = args.inputs.x as tf.TensorInfo;
  const { axis, keepDims } = args.attrs as unknown as tf.MeanAttrs;
  const plan = x.dtype === 'float32' ? middleAxisReduction(x.shape, axis, keepDims) : null;
  if (plan == null) return runStock(tf.Mean, args.inputs, backend, args.attrs);
  const out = backend.makeOutput(plan.outShape, 'float32');
  reduceMiddle(backend, x, out, plan, 1 / plan.reduce);
  return out;
}

export const meanConfig: tf.KernelConfig = {
  kernelName: tf.Mean,
  backendName: 'wasm',
  kernelFunc: mean as unknown as tf.KernelFunc,
};
