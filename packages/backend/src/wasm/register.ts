/**
 * Registers the WASM kernels Chorus needs for training on
 * @tensorflow/tfjs-backend-wasm 4.22:
 *
 * - Conv2DBackpropFilter: missing from the stock backend (conv training throws).
 * - Conv2DBackpropInput, Tile, StridedSlice, Transpose (rank > 4), BatchMatMul
 *   (transpose flags), Sum and Mean (over leading/middle axes, e.g. the
 *   BatchNorm reductions over [0, 1, 2]), Identity (no copy): faster
 *   replacements of slow stock kernels; every case they do not speed up falls
 *   back to the stock kernel.
 *
 * - ChorusBatchNorm and ChorusBatchNormGrad (see batch-norm.ts): BatchNorm (+ ReLU)
 *   forward and backward as WebAssembly SIMD kernels, registered only where the engine runs
 *   WebAssembly SIMD; the model composes tfjs ops where they are missing.
 *
 * Idempotent, and callable before or after `tf.setBackend('wasm')`: a replaced
 * stock kernel's setupFunc is kept on the replacement so a backend initialised
 * later still sets up the stock code the fallbacks call.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { batchMatMulConfig } from './batch-mat-mul.js';
import { batchNormConfig, batchNormGradConfig, batchNormGradient } from './batch-norm.js';
import { simdSupported } from './simd/module.js';
import { conv2DBackpropFilterConfig } from './conv2d-backprop-filter.js';
import { conv2DBackpropInputConfig } from './conv2d-backprop-input.js';
import { identityConfig } from './identity.js';
import { meanConfig } from './mean.js';
import { stridedSliceConfig } from './strided-slice.js';
import { sumConfig } from './sum.js';
import { tileConfig } from './tile.js';
import { transposeConfig } from './transpose.js';
import { getSavedStockKernel, saveStockKernel } from './util.js';

/** The kernels registered by `registerWasmTrainingKernels`, in registration order. */
export const wasmTrainingKernelConfigs: readonly tf.KernelConfig[] = [
  ...(simdSupported() ? [batchNormConfig, batchNormGradConfig] : []),
  conv2DBackpropFilterConfig,
  conv2DBackpropInputConfig,
  tileConfig,
  stridedSliceConfig,
  transposeConfig,
  batchMatMulConfig,
  sumConfig,
  meanConfig,
  identityConfig,
];

/** Registers the Chorus WASM training kernels (see module doc). Safe to call repeatedly. */
export function registerWasmTrainingKernels(): void {
  if (simdSupported() && tf.getGradient(batchNormGradient.kernelName) == null) tf.registerGradient(batchNormGradient);
  for (const config of wasmTrainingKernelConfigs) {
    const current = tf.getKernel(config.kernelName, 'wasm');
    if (current != null && current.kernelFunc === config.kernelFunc) continue;
    let setupFunc = current?.setupFunc;
    if (current != null) {
      // Keep the first stock kernel we saw (never one of ours).
      if (getSavedStockKernel(config.kernelName) == null) saveStockKernel(current);
      tf.unregisterKernel(config.kernelName, 'wasm');
    } else {
      setupFunc = getSavedStockKernel(config.kernelName)?.setupFunc;
    }
    tf.registerKernel({ ...config, ...(setupFunc != null ? { setupFunc } : {}) });
  }
}

/**
 * Restores the stock kernels (used by the benchmarks to time them), all or
 * those named. Kernels without a stock version (Conv2DBackpropFilter,
 * ChorusBatchNorm) stay registered.
 */
export function unregisterWasmTrainingKernels(names?: readonly string[]): void {
  for (const config of wasmTrainingKernelConfigs) {
    if (names != null && !names.includes(config.kernelName)) continue;
    const current = tf.getKernel(config.kernelName, 'wasm');
    const stock = getSavedStockKernel(config.kernelName);
    if (current == null || stock == null || current.kernelFunc !== config.kernelFunc) continue;
    tf.unregisterKernel(config.kernelName, 'wasm');
    tf.registerKernel(stock);
  }
}
