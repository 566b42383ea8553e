/**
 * Identity for the WASM backend without a copy. The engine clones every tensor it saves for a
 * backward pass through Identity (Engine.clone), and the stock WASM kernel copies the data: on
 * a resnet20v2 training step that is about 550 copies of activations (~15 ms of a ~480 ms step
 * at batch 32). Tensors are immutable, so the output can share the input's data, reference
 * counted, exactly as the stock Reshape kernel (and the CPU backend's Identity) do. Strings go
 * to the stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { type KernelArgs, runStock } from './util.js';

export function identity(args: KernelArgs): tf.TensorInfo {
  const x = args.inputs.x as tf.TensorInfo;
  if (x.dtype === 'string') return runStock(tf.Identity, args.inputs, args.backend, args.attrs);
  args.backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

export const identityConfig: tf.KernelConfig = {
  kernelName: tf.Identity,
  backendName: 'wasm',
  kernelFunc: identity as unknown as tf.KernelFunc,
};
