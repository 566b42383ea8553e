/**
 * Fused BatchNorm (+ ReLU) for training on the WASM backend: one kernel forward, one backward,
 * each a couple of WebAssembly SIMD passes over the activation (assembly/kernels.ts), where the
 * same layer composed of tfjs ops runs about fifteen elementwise kernels and reductions, with
 * their Identity copies and broadcasts, forward and backward.
 *
 * ChorusBatchNorm: inputs x [n, h, w, c] (or any [..., c]), gamma [c], beta [c]; attrs
 * groups (the leading dimension splits into this many equal BatchNorm groups, "ghost batches",
 * each normalised with its own moments), epsilon, relu (apply a ReLU to the output).
 * Outputs: y (x's shape), mean and variance [groups, c] (biased), the group moments.
 *
 * The gradient (ChorusBatchNormGrad) is that of y with respect to x, gamma and beta, the
 * moments depending on x (training mode). The mean and variance outputs are statistics to
 * report: no gradient flows back through them, whatever their consumers.
 *
 * The kernels are registered only where WebAssembly SIMD runs; callers check that one is
 * registered for the active backend (`tf.getKernel(BATCH_NORM_KERNEL, tf.getBackend())`) and
 * compose tfjs ops otherwise.
 */
import * as tf from '@tensorflow/tfjs';
import { type BackendWasm, type KernelArgs, sizeOf } from './util.js';
import { pointer, simdKernels, type SimdKernels } from './simd/module.js';

export const BATCH_NORM_KERNEL = 'ChorusBatchNorm';
export const BATCH_NORM_GRAD_KERNEL = 'ChorusBatchNormGrad';

export interface BatchNormAttrs {
  groups: number;
  epsilon: number;
  relu: boolean;
}

function kernels(backend: BackendWasm): SimdKernels {
  const k = simdKernels(backend);
  if (k == null) throw new Error(`${BATCH_NORM_KERNEL}: the WebAssembly SIMD kernels are not available on this backend`);
  return k;
}

/** [groups, rows, c] of an input, checked against the attributes. */
function geometry(x: tf.TensorInfo, groups: number): { rows: number; c: number } {
  const c = x.shape[x.shape.length - 1];
  const n = x.shape[0];
  if (x.dtype !== 'float32') throw new Error(`${BATCH_NORM_KERNEL}: float32 only, got ${x.dtype}`);
  if (x.shape.length < 2 || !Number.isInteger(groups) || groups < 1 || n % groups !== 0) {
    throw new Error(`${BATCH_NORM_KERNEL}: ${groups} groups do not divide the batch of x ${JSON.stringify(x.shape)}`);
  }
  return { rows: sizeOf(x.shape) / c / groups, c };
}

/** Scratch for the per-channel sums and coefficients (64 bytes a channel, see assembly/kernels.ts). */
function scratch(backend: BackendWasm, c: number): tf.TensorInfo {
  return backend.makeOutput([16 * c], 'float32');
}

function batchNormForward(args: KernelArgs): tf.TensorInfo[] {
  const { backend } = args;
  const x = args.inputs.x as tf.TensorInfo;
  const gamma = args.inputs.gamma as tf.TensorInfo;
  const beta = args.inputs.beta as tf.TensorInfo;
  const { groups, epsilon, relu } = args.attrs as unknown as BatchNormAttrs;
  const { rows, c } = geometry(x, groups);
  const k = kernels(backend);
  const y = backend.makeOutput(x.shape, 'float32');
  const mean = backend.makeOutput([groups, c], 'float32');
  const variance = backend.makeOutput([groups, c], 'float32');
  const s = scratch(backend, c);
  if (rows > 0) {
    const p = (t: tf.TensorInfo) => pointer(backend, t);
    k.bnForward(p(x), p(y), p(mean), p(variance), p(gamma), p(beta), groups, rows, c, epsilon, relu ? 1 : 0, p(s));
  } else {
    // Moments of nothing, as tf.moments gives them.
    backend.typedArrayFromHeap(mean).fill(NaN);
    backend.typedArrayFromHeap(variance).fill(NaN);
  }
  backend.disposeData(s.dataId);
  return [y, mean, variance];
}

function batchNormBackward(args: KernelArgs): tf.TensorInfo[] {
  const { backend } = args;
  const { dy, x, y, mean, variance, gamma } = args.inputs as Record<string, tf.TensorInfo>;
  const { groups, epsilon, relu } = args.attrs as unknown as BatchNormAttrs;
  const { rows, c } = geometry(x, groups);
  const k = kernels(backend);
  const dx = backend.makeOutput(x.shape, 'float32');
  const dgamma = backend.makeOutput([c], 'float32');
  const dbeta = backend.makeOutput([c], 'float32');
  const s = scratch(backend, c);
  const p = (t: tf.TensorInfo) => pointer(backend, t);
  k.bnBackward(p(x), p(y), p(dy), p(mean), p(variance), p(gamma), p(dx), p(dgamma), p(dbeta), groups, rows, c, epsilon, relu ? 1 : 0, p(s));
  backend.disposeData(s.dataId);
  return [dx, dgamma, dbeta];
}

export const batchNormConfig: tf.KernelConfig = {
  kernelName: BATCH_NORM_KERNEL,
  backendName: 'wasm',
  kernelFunc: batchNormForward as unknown as tf.KernelFunc,
};

export const batchNormGradConfig: tf.KernelConfig = {
  kernelName: BATCH_NORM_GRAD_KERNEL,
  backendName: 'wasm',
  kernelFunc: batchNormBackward as unknown as tf.KernelFunc,
};

/** Backend-independent: the tape calls it for ChorusBatchNorm nodes; it runs ChorusBatchNormGrad. */
export const batchNormGradient: tf.GradConfig = {
  kernelName: BATCH_NORM_KERNEL,
  inputsToSave: ['x', 'gamma'],
  outputsToSave: [true, true, true],
  gradFunc: (dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
    const dy = Array.isArray(dys) ? dys[0] : dys;
    const [x, gamma, y, mean, variance] = saved;
    // One kernel computes all three, here rather than in the per-input callbacks: the tape runs
    // each callback in its own tidy, which would dispose the other two results.
    const [dx, dgamma, dbeta] = tf.engine().runKernel(BATCH_NORM_GRAD_KERNEL, { dy, x, y, mean, variance, gamma }, attrs) as tf.Tensor[];
    return { x: () => dx, gamma: () => dgamma, beta: () => dbeta };
  },
};
