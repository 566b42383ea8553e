/**
 * Conv2DBackpropInput (the input gradient of conv2d, also conv2dTranspose) for
 * the WASM backend. The stock kernel is a naive direct loop; these paths use
 * the XNNPACK-backed stock Conv2D and BatchMatMul kernels instead:
 *
 * - 1x1 filters, any stride and padding: dx = dy[N, Co] x W^T[Co, Ci] as one
 *   GEMM; for stride > 1 (or padding) the rows are scattered into a zeroed dx
 *   (the zero-interleave), in JS on the WASM heap.
 * - stride 1, any filter size, padding <= filter size - 1 ('same', 'valid' or
 *   explicit): a forward conv of dy with the spatially flipped, in/out-swapped
 *   filter and padding (K-1-padBefore, K-1-padAfter).
 * - stride > 1 with larger filters: dy is zero-interleaved and padded in JS,
 *   then the same forward conv runs with 'valid' padding.
 *
 * NCHW, non-float32 and empty tensors go to the stock kernel.
 */
import * as tf from '@tensorflow/tfjs';
import { type BackendWasm, type KernelArgs, copyRun, disposeAll, f32, matMul2d, runStock, sizeOf, transpose2d, view } from './util.js';

/** W[KH, KW, Ci, Co] -> W'[KH, KW, Co, Ci] with W'[kh, kw] = W[KH-1-kh, KW-1-kw]^T (a new tensor). */
function flippedFilter(backend: BackendWasm, filter: tf.TensorInfo): tf.TensorInfo {
  const [kH, kW, inC, outC] = filter.shape;
  const out = backend.makeOutput([kH, kW, outC, inC], 'float32');
  const src = f32(backend, filter);
  const dst = f32(backend, out);
  const slab = inC * outC;
  for (let kh = 0; kh < kH; kh++) {
    for (let kw = 0; kw < kW; kw++) {
      const s = ((kH - 1 - kh) * kW + (kW - 1 - kw)) * slab;
      const d = (kh * kW + kw) * slab;
      transpose2d(src, s, outC, dst, d, inC, inC, outC);
    }
  }
  return out;
}

function conv(backend: BackendWasm, x: tf.TensorInfo, filter: tf.TensorInfo, pad: 'valid' | number[][]): tf.TensorInfo {
  return runStock(tf.Conv2D, { x, filter }, backend, {
    strides: [1, 1],
    pad,
    dataFormat: 'NHWC',
    dilations: [1, 1],
    dimRoundingMode: undefined as unknown as string,
  });
}

export function conv2DBackpropInput(args: KernelArgs): tf.TensorInfo {
  const { backend } = args;
  const dy = args.inputs.dy as tf.TensorInfo;
  const filter = args.inputs.filter as tf.TensorInfo;
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const $dataFormat = tf.backend_util.convertConv2DDataFormat(dataFormat);
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    $dataFormat,
  );
  if (
    info.dataFormat !== 'channelsLast' ||
    dy.dtype !== 'float32' ||
    filter.dtype !== 'float32' ||
    sizeOf(dy.shape) === 0 ||
    sizeOf(info.inShape) === 0 ||
    sizeOf(filter.shape) === 0
  ) {
    return runStock(tf.Conv2DBackpropInput, args.inputs, backend, args.attrs);
  }
  const { batchSize: batch, inHeight: inH, inWidth: inW, inChannels: inC, outHeight: outH, outWidth: outW } = info;
  const { outChannels: outC, filterHeight: kH, filterWidth: kW, strideHeight: sH, strideWidth: sW } = info;
  const { top, bottom, left, right } = info.padInfo;

  if (kH === 1 && kW === 1) {
    const n = batch * outH * outW;
    const wT = backend.makeOutput([outC, inC], 'float32');
    transpose2d(f32(backend, filter), 0, outC, f32(backend, wT), 0, inC, inC, outC);
    const y = matMul2d(backend, view(dy, [n, outC]), wT, n, outC, inC);
    backend.disposeData(wT.dataId);
    if (sH === 1 && sW === 1 && top === 0 && left === 0 && outH === inH && outW === inW) {
      return view(y, [batch, inH, inW, inC]);
    }
    const out = backend.makeOutput([batch, inH, inW, inC], 'float32');
    const yv = f32(backend, y);
    const ov = f32(backend, out);
    ov.fill(0);
    for (let b = 0; b < batch; b++) {
      for (let oh = 0; oh < outH; oh++) {
        const ih = oh * sH - top;
        if (ih < 0 || ih >= inH) continue;
        for (let ow = 0; ow < outW; ow++) {
          const iw = ow * sW - left;
          if (iw < 0 || iw >= inW) continue;
          copyRun(yv, ((b * outH + oh) * outW + ow) * inC, ov, ((b * inH + ih) * inW + iw) * inC, inC);
        }
      }
    }
    backend.disposeData(y.dataId);
    return out;
  }

  const padT = kH - 1 - top;
  const padB = kH - 1 - bottom;
  const padL = kW - 1 - left;
  const padR = kW - 1 - right;
  if (sH === 1 && sW === 1 && padT >= 0 && padB >= 0 && padL >= 0 && padR >= 0) {
    const wF = flippedFilter(backend, filter);
    const out = conv(backend, dy, wF, [
      [0, 0],
      [padT, padB],
      [padL, padR],
      [0, 0],
    ]);
    backend.disposeData(wF.dataId);
    return out;
  }

  // General stride: zero-interleave and pad dy, then a 'valid' stride-1 conv.
  const zH = inH + kH - 1;
  const zW = inW + kW - 1;
  const z = backend.makeOutput([batch, zH, zW, outC], 'float32');
  const zv = f32(backend, z);
  const dyv = f32(backend, dy);
  zv.fill(0);
  for (let b = 0; b < batch; b++) {
    for (let oh = 0; oh < outH; oh++) {
      const r = oh * sH + padT;
      if (r < 0 || r >= zH) continue;
      for (let ow = 0; ow < outW; ow++) {
        const c = ow * sW + padL;
        if (c < 0 || c >= zW) continue;
        copyRun(dyv, ((b * outH + oh) * outW + ow) * outC, zv, ((b * zH + r) * zW + c) * outC, outC);
      }
    }
  }
  const wF = flippedFilter(backend, filter);
  const out = conv(backend, z, wF, 'valid');
  disposeAll(backend, [z, wF]);
  return out;
}

export const conv2DBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropInput,
  backendName: 'wasm',
  kernelFunc: conv2DBackpropInput as unknown as tf.KernelFunc,
};
