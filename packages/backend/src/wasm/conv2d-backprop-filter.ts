/**
 * Conv2DBackpropFilter for the WASM backend (tfjs-backend-wasm 4.22 has none,
 * so every conv training step throws without it).
 *
 * dW[kh, kw, ci, co] = sum_{b, oh, ow} x[b, oh*sh + kh - pt, ow*sw + kw - pl, ci] * dy[b, oh, ow, co]
 *
 * Computed as one GEMM on XNNPACK (the stock BatchMatMul without transpose
 * flags): colsT[KH*KW*Ci, N] x dy[N, Co] = dW[KH*KW*Ci, Co], N ~ B*OH*OW,
 * which is already the [KH, KW, Ci, Co] filter layout. This orientation keeps
 * the GEMM's packed right operand small (dy rather than the im2col matrix).
 * colsT (im2col, transposed) is built on the WASM heap: x is transposed once
 * into zero-padded channel-major stride phases (JS), then every filter tap
 * copies contiguous runs with memmove (see backpropFilterChunk). Any filter
 * size, strides and padding ('same', 'valid', numeric, explicit) are handled.
 * Large inputs are processed in batch chunks so that the buffers stay below
 * ~64 MB. NCHW inputs are transposed to NHWC first. Dilations are always 1
 * for this kernel in TensorFlow.js.
 */
import * as tf from '@tensorflow/tfjs';
import { type BackendWasm, type KernelArgs, disposeAll, f32, matMul2d, sizeOf, transpose2d, view } from './util.js';
import { transposeInfo } from './transpose.js';
import { pointer, simdKernels, simdPathsEnabled } from './simd/module.js';

/** Upper bound on the im2col buffer, in float32 elements (64 MB). */
let maxColsElements = 1 << 24;

/**
 * Sets the im2col buffer bound (float32 elements) and returns the previous
 * one. Inputs whose buffer would be larger are processed in batch chunks.
 * Exposed for tests, which lower it to exercise the chunked path.
 */
export function setMaxColsElements(n: number): number {
  const prev = maxColsElements;
  maxColsElements = Math.max(1, Math.floor(n));
  return prev;
}

interface Geometry {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  outH: number;
  outW: number;
  outC: number;
  kH: number;
  kW: number;
  sH: number;
  sW: number;
  padTop: number;
  padLeft: number;
}

/** Float32 view of the whole WASM heap and the element offset of `info` in it. */
function heapAndOffset(backend: BackendWasm, info: tf.TensorInfo): [Float32Array, number] {
  const v = f32(backend, info);
  return [new Float32Array(v.buffer), v.byteOffset >>> 2];
}

/**
 * dW for the batch range [b0, b0 + nb) as a [KH*KW*Ci, Co] tensor.
 *
 * Layout trick: x is scattered (zero padded, channel-major) into stride
 * phases P[ry, rx][ci, b, i, j] = xPadded[b, i*sH + ry, j*sW + rx, ci] of size
 * [Ci, nb, Hq, Wq] with Hq = OH + (KH-1)/sH, Wq = OW + (KW-1)/sW. For filter
 * tap (kh, kw) = (qh*sH + ry, qw*sW + rx) the patch rows of every output row
 * are then one contiguous run of OH*Wq elements of phase (ry, rx), starting at
 * (qh, qw), over a "virtual" output grid OH x Wq whose columns >= OW read
 * neighbouring data; the matching rows of dy are zero, so they add nothing.
 * colsT is assembled from these runs with memmove (copyWithin on the heap) and
 * multiplied with the zero-extended dy in one XNNPACK GEMM.
 */
function backpropFilterChunk(x: tf.TensorInfo, dy: tf.TensorInfo, b0: number, nb: number, g: Geometry, backend: BackendWasm): tf.TensorInfo {
  const { inH, inW, inC, outH, outW, outC, kH, kW, sH, sW, padTop, padLeft } = g;
  const hq = outH + Math.floor((kH - 1) / sH);
  const wq = outW + Math.floor((kW - 1) / sW);
  const planeQ = nb * hq * wq;
  const phaseSize = inC * planeQ;
  // Phases actually used by some filter tap.
  const phaseH = Math.min(sH, kH);
  const phaseW = Math.min(sW, kW);
  const numPhases = phaseH * phaseW;
  const tail = wq + kW;
  const kc = kH * kW * inC;
  const n = nb * outH * wq;

  const phases = backend.makeOutput([numPhases * phaseSize + tail], 'float32');
  const cols = kH * kW === 1 ? null : backend.makeOutput([kc, n], 'float32');
  const dyExt = backend.makeOutput([n, outC], 'float32');

  const [heap, phasesOff] = heapAndOffset(backend, phases);
  const xOff = heapAndOffset(backend, x)[1];
  const dyOff = heapAndOffset(backend, dy)[1];
  const dyExtOff = heapAndOffset(backend, dyExt)[1];

  // 1. Phases: zero, then scatter x (transposing [W, Ci] rows to channel-major).
  // Every phase element is written below when there is one phase without
  // padding that exactly covers x (stride 1, pad 0, e.g. 1x1 or "valid"); then
  // only the tail needs zeros.
  const covered = numPhases === 1 && padTop === 0 && padLeft === 0 && hq === inH && wq === inW;
  heap.fill(0, covered ? phasesOff + phaseSize : phasesOff, phasesOff + numPhases * phaseSize + tail);
  for (let b = 0; b < nb; b++) {
    for (let h = 0; h < inH; h++) {
      const t = h + padTop;
      const ry = t % sH;
      const i = (t - ry) / sH;
      if (ry >= phaseH || i >= hq) continue;
      const rowOff = xOff + ((b0 + b) * inH + h) * inW * inC;
      for (let rx = 0; rx < phaseW; rx++) {
        // First input column w with (w + padLeft) % sW == rx, and its phase column.
        const w0 = (((rx - padLeft) % sW) + sW) % sW;
        const j0 = (w0 + padLeft - rx) / sW;
        if (w0 >= inW || j0 >= wq) continue;
        const count = Math.min(Math.ceil((inW - w0) / sW), wq - j0);
        const dst = phasesOff + (ry * phaseW + rx) * phaseSize + (b * hq + i) * wq + j0;
        transpose2d(heap, rowOff + w0 * inC, sW * inC, heap, dst, planeQ, count, inC);
      }
    }
  }

  // 2. dy rows, each output row zero-extended from OW to Wq columns.
  if (wq === outW) {
    heap.copyWithin(dyExtOff, dyOff + b0 * outH * outW * outC, dyOff + (b0 + nb) * outH * outW * outC);
  } else {
    const rowLen = outW * outC;
    const extLen = wq * outC;
    for (let r = 0; r < nb * outH; r++) {
      const src = dyOff + b0 * outH * rowLen + r * rowLen;
      const dst = dyExtOff + r * extLen;
      heap.copyWithin(dst, src, src + rowLen);
      heap.fill(0, dst + rowLen, dst + extLen);
    }
  }

  // 3. colsT[(kh, kw, ci), (b, oh, j)] from contiguous phase runs.
  let a: tf.TensorInfo = phases;
  if (cols != null) {
    const colsOff = heapAndOffset(backend, cols)[1];
    const run = outH * wq;
    for (let kh = 0; kh < kH; kh++) {
      const ry = kh % sH;
      const qh = (kh - ry) / sH;
      for (let kw = 0; kw < kW; kw++) {
        const rx = kw % sW;
        const qw = (kw - rx) / sW;
        const src0 = phasesOff + (ry * phaseW + rx) * phaseSize + qh * wq + qw;
        const dst0 = colsOff + (kh * kW + kw) * inC * n;
        if (hq === outH) {
          // Runs of consecutive images and channels are adjacent: one copy.
          heap.copyWithin(dst0, src0, src0 + inC * n);
          continue;
        }
        for (let ci = 0; ci < inC; ci++) {
          for (let b = 0; b < nb; b++) {
            const src = src0 + ci * planeQ + b * hq * wq;
            heap.copyWithin(dst0 + ci * n + b * run, src, src + run);
          }
        }
      }
    }
    a = cols;
  }
  const r = matMul2d(backend, a, dyExt, kc, n, outC);
  disposeAll(backend, [phases, cols, dyExt]);
  return r;
}

function backpropFilterNHWC(x: tf.TensorInfo, dy: tf.TensorInfo, g: Geometry, backend: BackendWasm): tf.TensorInfo {
  const { batch, outH, outW, outC, kH, kW, inC, sH, sW } = g;
  const filterShape = [kH, kW, inC, outC];
  const kc = kH * kW * inC;
  const wq = outW + Math.floor((kW - 1) / sW);
  const hq = outH + Math.floor((kH - 1) / sH);
  const perImage = Math.max(outH * wq * kc, hq * wq * inC * Math.min(sH, kH) * Math.min(sW, kW));
  if (batch === 0 || outH * outW === 0 || kc === 0 || outC === 0) {
    const out = backend.makeOutput(filterShape, 'float32');
    f32(backend, out).fill(0);
    return out;
  }
  const simd = simdPathsEnabled() && inC % 4 === 0 && outC % 8 === 0 ? simdKernels(backend) : null;
  if (simd != null) {
    // The direct WebAssembly SIMD kernel: no im2col, no GEMM packing (assembly/kernels.ts).
    const out = backend.makeOutput(filterShape, 'float32');
    const [px, pdy, pout] = [pointer(backend, x), pointer(backend, dy), pointer(backend, out)];
    simd.convBackpropFilter(px, pdy, pout, batch, g.inH, g.inW, inC, outH, outW, outC, kH, kW, sH, sW, g.padTop, g.padLeft);
    return out;
  }
  const chunk = Math.max(1, Math.min(batch, Math.floor(maxColsElements / perImage)));
  if (chunk === batch) return view(backpropFilterChunk(x, dy, 0, batch, g, backend), filterShape);
  const acc = new Float32Array(kc * outC);
  for (let b0 = 0; b0 < batch; b0 += chunk) {
    const r = backpropFilterChunk(x, dy, b0, Math.min(chunk, batch - b0), g, backend);
    const rv = f32(backend, r);
    for (let i = 0; i < acc.length; i++) acc[i] += rv[i];
    backend.disposeData(r.dataId);
  }
  const out = backend.makeOutput(filterShape, 'float32');
  f32(backend, out).set(acc);
  return out;
}

export function conv2DBackpropFilter(args: KernelArgs): tf.TensorInfo {
  const { backend } = args;
  const x = args.inputs.x as tf.TensorInfo;
  const dy = args.inputs.dy as tf.TensorInfo;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  const $dataFormat = tf.backend_util.convertConv2DDataFormat(dataFormat);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
    false,
    $dataFormat,
  );
  if (x.dtype !== 'float32' || dy.dtype !== 'float32') {
    throw new Error(`Conv2DBackpropFilter (wasm) supports float32 only, got ${x.dtype} and ${dy.dtype}`);
  }
  const expected = [info.batchSize, info.outHeight, info.outWidth, info.outChannels];
  const dyNHWC = info.dataFormat === 'channelsLast' ? dy.shape : [dy.shape[0], dy.shape[2], dy.shape[3], dy.shape[1]];
  if (sizeOf(dyNHWC) !== sizeOf(expected) || dyNHWC.some((d, i) => d !== expected[i])) {
    throw new Error(`Conv2DBackpropFilter: dy shape ${dy.shape} does not match the conv output shape ${info.outShape}`);
  }
  const g: Geometry = {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    kH: info.filterHeight,
    kW: info.filterWidth,
    sH: info.strideHeight,
    sW: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
  if (info.dataFormat === 'channelsLast') {
    return backpropFilterNHWC(x, dy, g, backend);
  }
  // NCHW: transpose both operands to NHWC, then run the NHWC path.
  const xNHWC = transposeInfo(backend, x, [0, 2, 3, 1]);
  const dyT = transposeInfo(backend, dy, [0, 2, 3, 1]);
  try {
    return backpropFilterNHWC(xNHWC, dyT, g, backend);
  } finally {
    disposeAll(backend, [xNHWC, dyT]);
  }
}

export const conv2DBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: 'wasm',
  kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc,
};
