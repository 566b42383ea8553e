/**
 * Stock tfjs-backend-wasm kernels vs the Chorus replacements on resnet20v2
 * (bottleneck ResNet V2, CIFAR-10) shapes at batch 32.
 *
 *   cd packages/backend && npx tsx bench/kernels.bench.ts [--runs=5]
 *
 * Each case: 2 warm-up runs, then the median of `runs` timed runs, stock and
 * Chorus runs interleaved (the output is read back with dataSync inside the
 * timing). Prints a markdown table (progress goes to stderr).
 * Conv2DBackpropFilter has no stock WASM kernel: its "stock" column is Chorus'
 * im2col + XNNPACK GEMM path, its "chorus" column the direct WebAssembly SIMD
 * kernel, and the note gives the forward Conv2D of the same shape. The fused
 * BatchNorm + ReLU rows compare the model's composed tfjs ops (with every
 * other Chorus kernel registered) with ChorusBatchNorm, forward and backward. The last row times a whole
 * resnet20v2 training step; its "stock" run keeps the Chorus
 * Conv2DBackpropFilter registered (training cannot run without it).
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmTrainingKernels, unregisterWasmTrainingKernels } from '../src/wasm/register.js';
import { BATCH_NORM_KERNEL } from '../src/wasm/batch-norm.js';
import { setSimdKernelsEnabled } from '../src/wasm/simd/module.js';

const BATCH = 32;
const runsArg = process.argv.find((a) => a.startsWith('--runs='));
const RUNS = runsArg != null ? Number(runsArg.slice('--runs='.length)) : 5;

function timeOnce(fn: () => tf.Tensor): number {
  const t0 = performance.now();
  const t = fn();
  t.dataSync();
  const ms = performance.now() - t0;
  t.dispose();
  return ms;
}

function medianOf(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function median(fn: () => tf.Tensor): number {
  for (let i = 0; i < 2; i++) timeOnce(fn);
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) times.push(timeOnce(fn));
  return medianOf(times);
}

interface Row {
  kernel: string;
  shape: string;
  stock: number | null;
  chorus: number;
  note?: string;
}
const rows: Row[] = [];

/** Stock and Chorus runs are interleaved so that load changes on the machine hit both alike. */
function compare(kernel: string, shape: string, fn: () => tf.Tensor): void {
  const stockTimes: number[] = [];
  const chorusTimes: number[] = [];
  for (let i = -2; i < RUNS; i++) {
    unregisterWasmTrainingKernels();
    const st = timeOnce(fn);
    registerWasmTrainingKernels();
    const ch = timeOnce(fn);
    if (i >= 0) {
      stockTimes.push(st);
      chorusTimes.push(ch);
    }
  }
  const stock = medianOf(stockTimes);
  const chorus = medianOf(chorusTimes);
  rows.push({ kernel, shape, stock, chorus });
  console.error(`${kernel} ${shape}: stock ${stock.toFixed(1)} ms, chorus ${chorus.toFixed(1)} ms`);
}

await tf.setBackend('wasm');
registerWasmTrainingKernels();

// [label, input size, Ci, Co, kernel, stride]
const convs: Array<[string, number, number, number, number, number]> = [
  ['stem 3x3', 32, 3, 16, 3, 1],
  ['stack1 1x1', 32, 16, 16, 1, 1],
  ['stack1 3x3', 32, 16, 16, 3, 1],
  ['stack1 1x1 (+proj)', 32, 16, 64, 1, 1],
  ['stack1 later 1x1', 32, 64, 16, 1, 1],
  ['stack2 1x1 s2', 32, 64, 64, 1, 2],
  ['stack2 3x3', 16, 64, 64, 3, 1],
  ['stack2 1x1', 16, 64, 128, 1, 1],
  ['stack2 proj 1x1 s2', 32, 64, 128, 1, 2],
  ['stack2 later 1x1', 16, 128, 64, 1, 1],
  ['stack3 1x1 s2', 16, 128, 128, 1, 2],
  ['stack3 3x3', 8, 128, 128, 3, 1],
  ['stack3 1x1', 8, 128, 256, 1, 1],
  ['stack3 proj 1x1 s2', 16, 128, 256, 1, 2],
  ['stack3 later 1x1', 8, 256, 128, 1, 1],
  // Not in resnet20v2 (basic-block ResNets downsample with them): the
  // zero-interleave path of Conv2DBackpropInput.
  ['other 3x3 s2', 32, 16, 32, 3, 2],
  ['other 3x3 s2', 16, 32, 64, 3, 2],
];

for (const [label, size, ci, co, k, s] of convs) {
  const xShape: [number, number, number, number] = [BATCH, size, size, ci];
  const wShape: [number, number, number, number] = [k, k, ci, co];
  const o = Math.ceil(size / s);
  const x = tf.randomNormal(xShape);
  const w = tf.randomNormal(wShape);
  const dy = tf.randomNormal([BATCH, o, o, co]);
  const shape = `${label}: x ${xShape.join('x')}, ${k}x${k} s${s} ${ci}->${co}`;
  compare(
    'Conv2DBackpropInput',
    shape,
    () => tf.engine().runKernel(tf.Conv2DBackpropInput, { dy, filter: w }, { strides: s, pad: 'same', dataFormat: 'NHWC', inputShape: xShape }) as tf.Tensor,
  );
  const fwd = median(() => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, s, 'same'));
  const dwFn = () =>
    tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy }, { strides: s, pad: 'same', dataFormat: 'NHWC', filterShape: wShape }) as tf.Tensor;
  setSimdKernelsEnabled(false);
  const im2col = median(dwFn);
  setSimdKernelsEnabled(true);
  const dw = median(dwFn);
  rows.push({ kernel: 'Conv2DBackpropFilter', shape, stock: im2col, chorus: dw, note: `forward Conv2D ${fwd.toFixed(1)} ms` });
  console.error(`Conv2DBackpropFilter ${shape}: im2col ${im2col.toFixed(1)} ms, simd ${dw.toFixed(1)} ms (fwd ${fwd.toFixed(1)})`);
  tf.dispose([x, w, dy]);
}

// BatchNorm (batch moments, one group of 32) + ReLU, forward and backward: the model's
// composed ops against the fused kernel.
for (const [size, c] of [
  [32, 16],
  [32, 64],
  [16, 128],
  [8, 256],
]) {
  const x = tf.randomNormal([BATCH, size, size, c]);
  const dy = tf.randomNormal([BATCH, size, size, c]);
  const gamma = tf.randomUniform([c], 0.5, 1.5);
  const beta = tf.randomNormal([c]);
  const composed = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor => {
    const grouped = tf.reshape(a, [1, -1, c]);
    const { mean, variance } = tf.moments(grouped, [1], true);
    const scale = tf.mul(tf.rsqrt(tf.add(variance, 1e-3)), g);
    return tf.relu(tf.reshape(tf.add(tf.mul(tf.sub(grouped, mean), scale), b), a.shape));
  };
  const fused = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor =>
    (tf.engine().runKernel(BATCH_NORM_KERNEL, { x: a, gamma: g, beta: b }, { groups: 1, epsilon: 1e-3, relu: true } as unknown as tf.NamedAttrMap) as tf.Tensor[])[0];
  // dy is fed in as the output's gradient; dx is read back (dgamma and dbeta are computed too).
  const step = (f: typeof composed) => (): tf.Tensor => tf.tidy(() => tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => f(a, g, b))([x, gamma, beta], dy)[0]);
  const stockTimes: number[] = [];
  const fusedTimes: number[] = [];
  for (let i = -2; i < RUNS; i++) {
    const st = timeOnce(step(composed));
    const ft = timeOnce(step(fused));
    if (i >= 0) {
      stockTimes.push(st);
      fusedTimes.push(ft);
    }
  }
  const stock = medianOf(stockTimes);
  const chorus = medianOf(fusedTimes);
  rows.push({ kernel: 'BatchNorm + ReLU, forward + backward', shape: `[${BATCH},${size},${size},${c}] (composed tfjs ops vs ChorusBatchNorm)`, stock, chorus });
  console.error(`BatchNorm + ReLU [${BATCH},${size},${size},${c}]: composed ${stock.toFixed(1)} ms, fused ${chorus.toFixed(1)} ms`);
  tf.dispose([x, dy, gamma, beta]);
}

// BatchNorm gradient: tile(reshape(rsqrt(var), [1, 1, 1, C]), [B, H, W, 1]).
for (const [size, c] of [
  [32, 16],
  [32, 64],
  [16, 64],
  [16, 128],
  [8, 128],
  [8, 256],
]) {
  const v = tf.randomNormal([1, 1, 1, c]);
  compare('Tile', `[1,1,1,${c}] -> [${BATCH},${size},${size},${c}]`, () => tf.tile(v, [BATCH, size, size, 1]));
  v.dispose();
}

// BatchNorm reductions: batch moments (Mean) and gradients (Sum) over [0, 1, 2].
for (const [size, c] of [
  [32, 16],
  [32, 64],
  [16, 128],
  [8, 256],
]) {
  const x = tf.randomNormal([BATCH, size, size, c]);
  compare('Sum', `[${BATCH},${size},${size},${c}] axes [0,1,2]`, () => tf.sum(x, [0, 1, 2]));
  compare('Mean', `[${BATCH},${size},${size},${c}] axes [0,1,2]`, () => tf.mean(x, [0, 1, 2]));
  x.dispose();
}

// Strided subsampling (x[:, ::2, ::2, :]) of stack 1 and stack 2 activations.
for (const [size, c] of [
  [32, 64],
  [16, 128],
]) {
  const x = tf.randomNormal([BATCH, size, size, c]);
  compare('StridedSlice', `[${BATCH},${size},${size},${c}][:, ::2, ::2, :]`, () =>
    tf.stridedSlice(x, [0, 0, 0, 0], [BATCH, size, size, c], [1, 2, 2, 1]),
  );
  x.dispose();
}

// Rank > 4 transposes (space-to-depth style block shuffles).
{
  const x6 = tf.randomNormal([BATCH, 16, 2, 16, 2, 64]);
  compare('Transpose', `[${BATCH},16,2,16,2,64] perm [0,1,3,2,4,5] (merges to 4-D: stock kernel)`, () => tf.transpose(x6, [0, 1, 3, 2, 4, 5]));
  compare('Transpose', `[${BATCH},16,2,16,2,64] perm [0,2,4,1,3,5]`, () => tf.transpose(x6, [0, 2, 4, 1, 3, 5]));
  const x5 = tf.randomNormal([BATCH, 8, 8, 16, 16]);
  compare('Transpose', `[${BATCH},8,8,16,16] perm [0,4,2,3,1] (merges to 4-D: stock kernel)`, () => tf.transpose(x5, [0, 4, 2, 3, 1]));
  tf.dispose([x6, x5]);
}

// matMul gradients of the Dense head (256 -> 10) and of a larger layer.
for (const [m, k, n] of [
  [BATCH, 256, 10],
  [256, 1024, 512],
]) {
  const a = tf.randomNormal([m, k]);
  const w = tf.randomNormal([k, n]);
  const dy = tf.randomNormal([m, n]);
  compare('BatchMatMul', `dA = dy[${m},${n}] x W[${k},${n}]^T (transposeB)`, () => tf.matMul(dy, w, false, true));
  compare('BatchMatMul', `dW = a[${m},${k}]^T x dy[${m},${n}] (transposeA)`, () => tf.matMul(a, dy, true, false));
  tf.dispose([a, w, dy]);
}

// One training step (forward + tf.variableGrads) of resnet20v2 (Keras
// resnet_v2 example, depth 20: bottleneck units, 3 stacks x 2 units,
// filters 16 -> 64 -> 128 -> 256, BatchNorm from batch moments).
interface Params {
  [name: string]: tf.Variable;
}
function resnet20v2(): { params: Params; loss: (x: tf.Tensor4D, y: tf.Tensor2D) => tf.Scalar } {
  const params: Params = {};
  let n = 0;
  const conv = (x: tf.Tensor4D, k: number, co: number, s: number): tf.Tensor4D => {
    const name = `conv${n++}`;
    params[name] ??= tf.variable(tf.randomNormal([k, k, x.shape[3], co], 0, Math.sqrt(2 / (k * k * x.shape[3]))), true, name);
    return tf.conv2d(x, params[name] as tf.Tensor4D, s, 'same');
  };
  const bn = (x: tf.Tensor4D): tf.Tensor4D => {
    const c = x.shape[3];
    const g = `bn${n++}`;
    params[`${g}_gamma`] ??= tf.variable(tf.ones([c]), true, `${g}_gamma`);
    params[`${g}_beta`] ??= tf.variable(tf.zeros([c]), true, `${g}_beta`);
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    return tf.batchNorm4d(x, mean as tf.Tensor1D, variance as tf.Tensor1D, params[`${g}_beta`] as tf.Tensor1D, params[`${g}_gamma`] as tf.Tensor1D, 1e-3);
  };
  const forward = (input: tf.Tensor4D): tf.Tensor2D => {
    n = 0;
    let x = tf.relu(bn(conv(input, 3, 16, 1)));
    let filtersIn = 16;
    for (let stage = 0; stage < 3; stage++) {
      for (let unit = 0; unit < 2; unit++) {
        const filtersOut = stage === 0 ? filtersIn * 4 : filtersIn * 2;
        const strides = stage > 0 && unit === 0 ? 2 : 1;
        // Pre-activation bottleneck: (bn-relu)-conv1x1, bn-relu-conv3x3, bn-relu-conv1x1.
        const pre = stage === 0 && unit === 0 ? x : tf.relu(bn(x));
        let y = conv(pre, 1, filtersIn, strides);
        y = conv(tf.relu(bn(y)), 3, filtersIn, 1);
        y = conv(tf.relu(bn(y)), 1, filtersOut, 1);
        if (unit === 0) x = conv(x, 1, filtersOut, strides);
        x = tf.add(x, y);
      }
      filtersIn = stage === 0 ? filtersIn * 4 : filtersIn * 2;
    }
    const pooled = tf.avgPool(tf.relu(bn(x)), 8, 1, 'valid').reshape([input.shape[0], -1]) as tf.Tensor2D;
    params.dense ??= tf.variable(tf.randomNormal([pooled.shape[1], 10], 0, 0.05), true, 'dense');
    params.bias ??= tf.variable(tf.zeros([10]), true, 'bias');
    return tf.add(tf.matMul(pooled, params.dense), params.bias);
  };
  const loss = (x: tf.Tensor4D, y: tf.Tensor2D): tf.Scalar => tf.losses.softmaxCrossEntropy(y, forward(x)) as tf.Scalar;
  return { params, loss };
}

{
  const model = resnet20v2();
  const x = tf.randomNormal([BATCH, 32, 32, 3]) as tf.Tensor4D;
  const y = tf.oneHot(tf.randomUniform([BATCH], 0, 10, 'int32') as tf.Tensor1D, 10).toFloat() as tf.Tensor2D;
  tf.tidy(() => model.loss(x, y)); // creates the variables
  const step = (): tf.Tensor => {
    const { value, grads } = tf.variableGrads(() => model.loss(x, y));
    const g = Object.values(grads);
    for (const t of g) t.dataSync();
    tf.dispose(g);
    return value;
  };
  const stepTimes = { stock: [] as number[], chorus: [] as number[] };
  const stepRuns = Math.max(3, Math.min(RUNS, 5));
  for (let i = -1; i < stepRuns; i++) {
    unregisterWasmTrainingKernels();
    const st = timeOnce(step);
    registerWasmTrainingKernels();
    const ch = timeOnce(step);
    if (i >= 0) {
      stepTimes.stock.push(st);
      stepTimes.chorus.push(ch);
    }
  }
  const stock = medianOf(stepTimes.stock);
  const chorus = medianOf(stepTimes.chorus);
  rows.push({
    kernel: 'training step',
    shape: `resnet20v2 forward + variableGrads, batch ${BATCH} (stock = stock kernels + Chorus Conv2DBackpropFilter)`,
    stock,
    chorus,
  });
  console.error(`training step: stock ${stock.toFixed(0)} ms, chorus ${chorus.toFixed(0)} ms`);
  tf.dispose([x, y, ...Object.values(model.params)]);
}

const fmt = (v: number | null): string => (v == null ? 'n/a' : v.toFixed(1));
console.log(`\nBackend wasm (SIMD ${String(tf.env().getBool('WASM_HAS_SIMD_SUPPORT'))}, 1 thread), batch ${BATCH}, median of ${RUNS} runs.\n`);
console.log('| kernel | case | stock ms | chorus ms | speed-up |');
console.log('|---|---|---:|---:|---:|');
for (const r of rows) {
  const speedup = r.stock == null ? (r.note ?? '') : `${(r.stock / r.chorus).toFixed(1)}x${r.note != null ? ` (${r.note})` : ''}`;
  console.log(`| ${r.kernel} | ${r.shape} | ${fmt(r.stock)} | ${fmt(r.chorus)} | ${speedup} |`);
}
