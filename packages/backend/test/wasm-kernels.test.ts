/**
 * Chorus WASM training kernels vs the TensorFlow.js CPU backend.
 *
 *   cd packages/backend && npx tsx --test test/wasm-*.test.ts
 *
 * Every case runs the same seeded inputs on 'wasm' (with the Chorus kernels
 * registered) and on 'cpu', and requires
 *   max |wasm - cpu| / max |cpu|  <=  RTOL = 1e-4
 * (normwise relative error; exact equality for pure data movement).
 * Leak checks assert that tf.memory().numTensors and the wasm backend's
 * numDataIds() are unchanged after repeated calls.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { registerWasmTrainingKernels } from '../src/index.js';
import { setMaxColsElements } from '../src/wasm/conv2d-backprop-filter.js';
import { wasmTrainingKernelConfigs } from '../src/wasm/register.js';
import { BATCH_NORM_GRAD_KERNEL, BATCH_NORM_KERNEL } from '../src/wasm/batch-norm.js';
import { setSimdKernelsEnabled, simdSupported } from '../src/wasm/simd/module.js';

const RTOL = 1e-4;

type Shape = number[];
type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];

/** Deterministic uniform values in [-1, 1). */
function rand(shape: Shape, seed: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = s / 2147483648 - 1;
  }
  return out;
}

interface Result {
  shape: number[];
  data: ArrayLike<number>;
}

async function runOn(backendName: 'wasm' | 'cpu', fn: () => tf.Tensor): Promise<Result> {
  await tf.setBackend(backendName);
  const t = tf.tidy(fn);
  const data = t.dataSync();
  const shape = t.shape;
  t.dispose();
  return { shape, data };
}

function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
  }
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

/** Runs `fn` on wasm and cpu (or `cpuFn` on cpu) and compares (rtol 0 means exact). */
async function assertMatchesCpu(name: string, fn: () => tf.Tensor, rtol = RTOL, cpuFn = fn): Promise<void> {
  const w = await runOn('wasm', fn);
  const c = await runOn('cpu', cpuFn);
  assert.deepEqual(w.shape, c.shape, `${name}: shape`);
  assert.equal(w.data.length, c.data.length, `${name}: size`);
  const err = relError(w.data, c.data);
  assert.ok(!Number.isNaN(err), `${name}: NaN`);
  assert.ok(err <= rtol, `${name}: relative error ${err.toExponential(2)} > ${rtol}`);
}

/** Runs `fn` a few times on wasm and checks that no tensor or data id leaks. */
async function assertNoLeak(name: string, fn: () => tf.Tensor): Promise<void> {
  await tf.setBackend('wasm');
  const backend = tf.backend() as BackendWasm;
  tf.tidy(fn).dispose();
  const tensors = tf.memory().numTensors;
  const ids = backend.numDataIds();
  for (let i = 0; i < 3; i++) tf.tidy(fn).dispose();
  assert.equal(tf.memory().numTensors, tensors, `${name}: tensors leaked`);
  assert.equal(backend.numDataIds(), ids, `${name}: data ids leaked`);
}

interface ConvCase {
  name: string;
  x: Shape;
  filter: Shape;
  strides: number | [number, number];
  pad: Pad;
  dataFormat?: 'NHWC' | 'NCHW';
}

const convCases: ConvCase[] = [
  { name: 'resnet 3x3 s1 same 16->16', x: [8, 32, 32, 16], filter: [3, 3, 16, 16], strides: 1, pad: 'same' },
  { name: 'resnet 1x1 s2 projection 64->64', x: [8, 32, 32, 64], filter: [1, 1, 64, 64], strides: 2, pad: 'same' },
  { name: 'resnet 1x1 s2 projection 64->128', x: [4, 16, 16, 64], filter: [1, 1, 64, 128], strides: 2, pad: 'same' },
  { name: 'resnet 3x3 s1 64->64', x: [4, 16, 16, 64], filter: [3, 3, 64, 64], strides: 1, pad: 'same' },
  { name: 'resnet stem batch 1 3x3 3->16', x: [1, 32, 32, 3], filter: [3, 3, 3, 16], strides: 1, pad: 'same' },
  { name: '1x1 s1 16->32', x: [2, 8, 8, 16], filter: [1, 1, 16, 32], strides: 1, pad: 'valid' },
  { name: '3x3 s2 same even', x: [4, 16, 16, 8], filter: [3, 3, 8, 12], strides: 2, pad: 'same' },
  { name: '3x3 s2 same odd', x: [3, 15, 13, 5], filter: [3, 3, 5, 7], strides: 2, pad: 'same' },
  { name: '3x3 s2 valid even', x: [4, 16, 16, 8], filter: [3, 3, 8, 12], strides: 2, pad: 'valid' },
  { name: '3x3 s2 valid odd', x: [3, 17, 13, 5], filter: [3, 3, 5, 7], strides: 2, pad: 'valid' },
  { name: '3x3 s1 valid batch 1', x: [1, 9, 7, 4], filter: [3, 3, 4, 6], strides: 1, pad: 'valid' },
  { name: '2x2 s1 same (asymmetric pad)', x: [3, 8, 8, 4], filter: [2, 2, 4, 6], strides: 1, pad: 'same' },
  { name: '5x5 explicit pad strides [2,1]', x: [2, 11, 9, 4], filter: [5, 5, 4, 6], strides: [2, 1], pad: [[0, 0], [2, 1], [1, 2], [0, 0]] },
  { name: '3x3 numeric pad 1 s2', x: [2, 9, 9, 3], filter: [3, 3, 3, 5], strides: 2, pad: 1 },
  { name: '1x3 s[1,2] same', x: [2, 7, 10, 3], filter: [1, 3, 3, 4], strides: [1, 2], pad: 'same' },
  { name: '3x1 s[2,1] valid', x: [2, 10, 7, 3], filter: [3, 1, 3, 4], strides: [2, 1], pad: 'valid' },
  { name: '1x1 s3 valid odd', x: [2, 10, 11, 6], filter: [1, 1, 6, 5], strides: 3, pad: 'valid' },
  { name: '1x1 s2 explicit pad', x: [2, 8, 8, 4], filter: [1, 1, 4, 3], strides: 2, pad: [[0, 0], [1, 0], [0, 1], [0, 0]] },
  { name: '4x4 s3 same', x: [2, 13, 14, 3], filter: [4, 4, 3, 5], strides: 3, pad: 'same' },
  { name: '3x3 s1 explicit pad > k-1', x: [2, 6, 6, 3], filter: [3, 3, 3, 4], strides: 1, pad: [[0, 0], [3, 0], [0, 4], [0, 0]] },
  { name: 'batch 128 3x3 s1 4->8', x: [128, 8, 8, 4], filter: [3, 3, 4, 8], strides: 1, pad: 'same' },
  { name: 'NCHW 3x3 s1', x: [2, 5, 8, 8], filter: [3, 3, 5, 6], strides: 1, pad: 'same', dataFormat: 'NCHW' },
];

function convGeometry(c: ConvCase): { dyShape: number[]; xShape: [number, number, number, number] } {
  const xShape = c.x as [number, number, number, number];
  const info = tf.backend_util.computeConv2DInfo(
    xShape,
    c.filter as [number, number, number, number],
    c.strides,
    1,
    c.pad,
    undefined,
    false,
    c.dataFormat === 'NCHW' ? 'channelsFirst' : 'channelsLast',
  );
  return { dyShape: info.outShape, xShape };
}

function backpropFilter(c: ConvCase, seed: number): () => tf.Tensor {
  const { dyShape, xShape } = convGeometry(c);
  const x = rand(xShape, seed);
  const dy = rand(dyShape, seed + 1);
  return () =>
    tf.engine().runKernel(
      tf.Conv2DBackpropFilter,
      { x: tf.tensor(x, xShape), dy: tf.tensor(dy, dyShape) },
      { strides: c.strides, pad: c.pad, dataFormat: c.dataFormat ?? 'NHWC', filterShape: c.filter } as unknown as tf.NamedAttrMap,
    ) as tf.Tensor;
}

function backpropInput(c: ConvCase, seed: number): () => tf.Tensor {
  const { dyShape, xShape } = convGeometry(c);
  const w = rand(c.filter, seed + 2);
  const dy = rand(dyShape, seed + 1);
  return () =>
    tf.engine().runKernel(
      tf.Conv2DBackpropInput,
      { dy: tf.tensor(dy, dyShape), filter: tf.tensor(w, c.filter) },
      { strides: c.strides, pad: c.pad, dataFormat: c.dataFormat ?? 'NHWC', inputShape: xShape } as unknown as tf.NamedAttrMap,
    ) as tf.Tensor;
}

// Registration before the backend is initialised; `before` repeats it after.
registerWasmTrainingKernels();

before(async () => {
  await tf.setBackend('wasm');
  registerWasmTrainingKernels();
});

describe('registerWasmTrainingKernels', () => {
  test('is idempotent, warns about nothing and keeps the Chorus kernels registered', () => {
    const warnings: string[] = [];
    const origWarn = console.warn;
    console.warn = (...args: unknown[]) => {
      warnings.push(args.map(String).join(' '));
    };
    try {
      registerWasmTrainingKernels();
      registerWasmTrainingKernels();
    } finally {
      console.warn = origWarn;
    }
    assert.deepEqual(warnings, []);
    for (const config of wasmTrainingKernelConfigs) {
      assert.equal(tf.getKernel(config.kernelName, 'wasm')?.kernelFunc, config.kernelFunc, config.kernelName);
    }
  });
});

describe('Conv2DBackpropFilter', () => {
  convCases.forEach((c, i) => {
    test(`${c.name}: x ${c.x} filter ${c.filter}`, async () => {
      await assertMatchesCpu(c.name, backpropFilter(c, 10 * i + 1));
    });
  });
  test('im2col + GEMM path (SIMD kernel off) on the cases the SIMD kernel takes', async () => {
    // Where WebAssembly SIMD is missing the im2col path runs every shape.
    const prev = setSimdKernelsEnabled(false);
    try {
      for (const [i, c] of convCases.entries()) await assertMatchesCpu(`${c.name} (im2col)`, backpropFilter(c, 10 * i + 1));
    } finally {
      setSimdKernelsEnabled(prev);
    }
  });
  // Channel counts the direct SIMD kernel takes (ci % 4 == 0, co % 8 == 0): the presets' shapes
  // at batch 32, and odd sizes, strides and every padding kind.
  const simdCases: ConvCase[] = [
    { name: 'resnet20v2 stack1 1x1 16->64', x: [32, 32, 32, 16], filter: [1, 1, 16, 64], strides: 1, pad: 'same' },
    { name: 'resnet20v2 stack2 1x1 s2 64->64', x: [32, 32, 32, 64], filter: [1, 1, 64, 64], strides: 2, pad: 'same' },
    { name: 'resnet20v2 stack3 proj 1x1 s2 128->256', x: [32, 16, 16, 128], filter: [1, 1, 128, 256], strides: 2, pad: 'same' },
    { name: 'resnet20v2 stack2 3x3 64->64', x: [32, 16, 16, 64], filter: [3, 3, 64, 64], strides: 1, pad: 'same' },
    { name: 'resnet20v2 stack3 3x3 128->128', x: [32, 8, 8, 128], filter: [3, 3, 128, 128], strides: 1, pad: 'same' },
    { name: '3x3 s2 same odd', x: [3, 15, 13, 8], filter: [3, 3, 8, 16], strides: 2, pad: 'same' },
    { name: '3x3 s2 valid odd', x: [3, 17, 13, 4], filter: [3, 3, 4, 8], strides: 2, pad: 'valid' },
    { name: '5x5 explicit pad strides [2,1]', x: [2, 11, 9, 4], filter: [5, 5, 4, 8], strides: [2, 1], pad: [[0, 0], [2, 1], [1, 2], [0, 0]] },
    { name: '3x3 explicit pad > k-1', x: [2, 6, 6, 4], filter: [3, 3, 4, 8], strides: 1, pad: [[0, 0], [3, 0], [0, 4], [0, 0]] },
    { name: '4x4 s3 same', x: [2, 13, 14, 8], filter: [4, 4, 8, 16], strides: 3, pad: 'same' },
    { name: '1x1 s2 explicit pad', x: [2, 8, 8, 4], filter: [1, 1, 4, 8], strides: 2, pad: [[0, 0], [1, 0], [0, 1], [0, 0]] },
    { name: 'NCHW 3x3 s1', x: [2, 8, 8, 8], filter: [3, 3, 8, 8], strides: 1, pad: 'same', dataFormat: 'NCHW' },
  ];
  simdCases.forEach((c, i) => {
    test(`SIMD kernel ${c.name}: x ${c.x} filter ${c.filter}`, async () => {
      await assertMatchesCpu(c.name, backpropFilter(c, 10 * i + 5));
    });
  });
  test('SIMD kernel: bit-identical from run to run, no leaks', async () => {
    const a = await runOn('wasm', backpropFilter(simdCases[3], 9));
    const b = await runOn('wasm', backpropFilter(simdCases[3], 9));
    assert.deepEqual(b.data, a.data);
    for (const c of simdCases.slice(5, 9)) await assertNoLeak(c.name, backpropFilter(c, 3));
  });
  test('batch-chunked im2col path', async () => {
    // Buffers of a few images only: several chunks, the last one partial.
    const prev = setMaxColsElements(2000);
    try {
      const chunked: ConvCase[] = [
        { name: '3x3 s1 same', x: [7, 10, 10, 4], filter: [3, 3, 4, 5], strides: 1, pad: 'same' },
        { name: '3x3 s2 same odd', x: [5, 11, 9, 3], filter: [3, 3, 3, 4], strides: 2, pad: 'same' },
        { name: '1x1 s2', x: [9, 16, 16, 24], filter: [1, 1, 24, 5], strides: 2, pad: 'valid' },
      ];
      for (const c of chunked) {
        await assertMatchesCpu(`${c.name} (chunked)`, backpropFilter(c, 7));
        await assertNoLeak(`${c.name} (chunked)`, backpropFilter(c, 7));
      }
    } finally {
      setMaxColsElements(prev);
    }
  });
  test('no leaked tensors or data ids', async () => {
    for (const i of [0, 1, 4, 7, 12, 21]) await assertNoLeak(convCases[i].name, backpropFilter(convCases[i], 3));
  });
});

describe('Conv2DBackpropInput', () => {
  convCases.forEach((c, i) => {
    test(`${c.name}: x ${c.x} filter ${c.filter}`, async () => {
      await assertMatchesCpu(c.name, backpropInput(c, 10 * i + 5));
    });
  });
  test('conv2dTranspose op', async () => {
    const x = rand([2, 8, 8, 6], 99);
    const w = rand([3, 3, 4, 6], 98);
    await assertMatchesCpu('conv2dTranspose', () =>
      tf.conv2dTranspose(tf.tensor4d(x, [2, 8, 8, 6]), tf.tensor4d(w, [3, 3, 4, 6]), [2, 16, 16, 4], 2, 'same'),
    );
  });
  test('no leaked tensors or data ids', async () => {
    // 1x1 s1, 1x1 s2, kxk s1, kxk s2, explicit pad > k-1 (general path), NCHW (stock).
    for (const i of [5, 1, 0, 7, 19, 21]) await assertNoLeak(convCases[i].name, backpropInput(convCases[i], 3));
  });
});

describe('Tile', () => {
  const cases: Array<{ shape: Shape; reps: number[]; dtype?: 'float32' | 'int32' | 'bool' }> = [
    { shape: [1, 1, 1, 16], reps: [8, 32, 32, 1] },
    { shape: [1, 1, 1, 64], reps: [4, 16, 16, 1] },
    { shape: [2, 3, 4], reps: [3, 1, 2] },
    { shape: [5], reps: [7] },
    { shape: [3, 1, 2, 1, 2], reps: [1, 4, 1, 3, 2] },
    { shape: [4, 6], reps: [1, 1] },
    { shape: [2, 3], reps: [2, 3], dtype: 'int32' },
    { shape: [2, 3], reps: [3, 2], dtype: 'bool' },
  ];
  for (const c of cases) {
    test(`${c.dtype ?? 'float32'} ${c.shape} reps ${c.reps}`, async () => {
      const data = rand(c.shape, 3);
      const make = (): tf.Tensor => {
        if (c.dtype === 'int32') return tf.tensor(Int32Array.from(data, (v) => Math.round(v * 100)), c.shape, 'int32');
        if (c.dtype === 'bool') return tf.tensor(Uint8Array.from(data, (v) => (v > 0 ? 1 : 0)), c.shape, 'bool');
        return tf.tensor(data, c.shape);
      };
      await assertMatchesCpu(`tile ${c.shape}`, () => tf.tile(make(), c.reps), 0);
    });
  }
  test('no leaked tensors or data ids', async () => {
    const v = rand([1, 1, 1, 16], 4);
    await assertNoLeak('tile', () => tf.tile(tf.tensor(v, [1, 1, 1, 16]), [4, 8, 8, 1]));
  });
});

describe('StridedSlice', () => {
  const x = rand([4, 9, 10, 6], 11);
  const xShape = [4, 9, 10, 6];
  const cases: Array<[string, () => tf.Tensor, (() => tf.Tensor)?]> = [
    ['[:, ::2, ::2, :]', () => tf.stridedSlice(tf.tensor(x, xShape), [0, 0, 0, 0], [4, 9, 10, 6], [1, 2, 2, 1])],
    ['[1:3, 1::3, ::-2, 1:5:2]', () => tf.stridedSlice(tf.tensor(x, xShape), [1, 1, 0, 1], [3, 0, 0, 5], [1, 3, -2, 2], 4, 4 | 2)],
    ['negative strides', () => tf.stridedSlice(tf.tensor(x, xShape), [3, 8, 1, 5], [0, 0, 9, 0], [-1, -3, 2, -2])],
    // The CPU kernel throws on shrinkAxisMask with strides (it indexes with
    // finalShapeSparse, which omits shrunk axes): compare with slice + reshape.
    [
      'shrink axis x[2, ::2, :, ::3]',
      () => tf.stridedSlice(tf.tensor(x, xShape), [2, 0, 0, 0], [3, 9, 10, 6], [1, 2, 1, 3], 0, 0, 0, 0, 1),
      () => tf.reshape(tf.stridedSlice(tf.tensor(x, xShape), [2, 0, 0, 0], [3, 9, 10, 6], [1, 2, 1, 3]), [5, 10, 2]),
    ],
    ['ellipsis + new axis', () => tf.stridedSlice(tf.tensor(x, xShape), [0, 0, 1], [0, 0, 6], [1, 1, 2], 0, 0, 1, 2)],
    ['int32', () => tf.stridedSlice(tf.tensor(Int32Array.from(x, (v) => Math.round(v * 50)), xShape, 'int32'), [0, 1, 0, 0], [4, 9, 10, 6], [2, 2, 3, 1])],
    ['contiguous (stock path)', () => tf.stridedSlice(tf.tensor(x, xShape), [1, 0, 0, 0], [3, 9, 10, 6], [1, 1, 1, 1])],
  ];
  for (const [name, fn, cpuFn] of cases) {
    test(name, async () => {
      await assertMatchesCpu(`stridedSlice ${name}`, fn, 0, cpuFn ?? fn);
    });
  }
  test('no leaked tensors or data ids', async () => {
    await assertNoLeak('stridedSlice', cases[0][1]);
  });
});

describe('Transpose', () => {
  const cases: Array<{ shape: Shape; perm: number[]; dtype?: 'int32' }> = [
    { shape: [2, 3, 4, 5, 6], perm: [4, 2, 0, 3, 1] },
    { shape: [4, 8, 2, 8, 2, 3], perm: [0, 2, 4, 1, 3, 5] },
    { shape: [4, 8, 2, 8, 2, 3], perm: [0, 1, 3, 2, 4, 5] },
    { shape: [2, 3, 1, 4, 5, 6], perm: [5, 0, 2, 3, 1, 4] },
    { shape: [3, 2, 4, 2, 3], perm: [1, 0, 3, 2, 4], dtype: 'int32' },
    { shape: [6, 5, 4, 3], perm: [3, 1, 2, 0] },
    { shape: [7, 9], perm: [1, 0] },
  ];
  for (const c of cases) {
    test(`${c.dtype ?? 'float32'} ${c.shape} perm ${c.perm}`, async () => {
      const data = rand(c.shape, 5);
      const make = (): tf.Tensor =>
        c.dtype === 'int32' ? tf.tensor(Int32Array.from(data, (v) => Math.round(v * 1000)), c.shape, 'int32') : tf.tensor(data, c.shape);
      await assertMatchesCpu(`transpose ${c.shape}`, () => tf.transpose(make(), c.perm), 0);
    });
  }
  test('no leaked tensors or data ids', async () => {
    const data = rand([2, 3, 4, 5, 6], 6);
    await assertNoLeak('transpose', () => tf.transpose(tf.tensor(data, [2, 3, 4, 5, 6]), [4, 2, 0, 3, 1]));
  });
});

describe('BatchMatMul', () => {
  const cases: Array<{ a: Shape; b: Shape; ta: boolean; tb: boolean }> = [
    { a: [64, 32], b: [64, 10], ta: true, tb: false },
    { a: [32, 10], b: [256, 10], ta: false, tb: true },
    { a: [33, 17], b: [9, 33], ta: true, tb: true },
    { a: [1, 40, 7], b: [1, 5, 40], ta: true, tb: true },
    { a: [1, 1], b: [3, 1], ta: false, tb: true },
    { a: [2, 6, 4], b: [2, 5, 6], ta: true, tb: true },
    { a: [8, 12], b: [12, 5], ta: false, tb: false },
  ];
  for (const c of cases) {
    test(`a ${c.a}${c.ta ? '^T' : ''} x b ${c.b}${c.tb ? '^T' : ''}`, async () => {
      const a = rand(c.a, 21);
      const b = rand(c.b, 22);
      await assertMatchesCpu('matMul', () => tf.matMul(tf.tensor(a, c.a), tf.tensor(b, c.b), c.ta, c.tb));
    });
  }
  test('no leaked tensors or data ids', async () => {
    const a = rand([64, 32], 1);
    const b = rand([16, 32], 2);
    await assertNoLeak('matMul transposeB', () => tf.matMul(tf.tensor(a, [64, 32]), tf.tensor(b, [16, 32]), false, true));
    await assertNoLeak('matMul transposeA', () => tf.matMul(tf.tensor(a, [64, 32]), tf.tensor(a, [64, 32]), true, false));
  });
});

describe('Sum and Mean', () => {
  const cases: Array<{ shape: Shape; axis: number | number[]; keepDims?: boolean }> = [
    { shape: [8, 32, 32, 16], axis: [0, 1, 2] },
    { shape: [4, 16, 16, 64], axis: [0, 1, 2], keepDims: true },
    { shape: [4, 5, 6, 7], axis: [1, 2] },
    { shape: [4, 5, 6, 7], axis: [-3, -2, -4] },
    { shape: [9, 3], axis: 0 },
    { shape: [3, 1, 5], axis: [1] },
    { shape: [4, 5, 6, 7], axis: [0, 2] },
    { shape: [4, 5, 6, 7], axis: [2, 3] },
    { shape: [4, 5, 6, 7], axis: [0, 1, 2, 3] },
    // resnet20v2 conv bias gradients at batch 32 (more than one 64-row chunk, and a tail).
    { shape: [32, 32, 32, 64], axis: [0, 1, 2] },
    { shape: [32, 8, 8, 256], axis: [0, 1, 2] },
    { shape: [3, 7, 5, 18], axis: [0, 1, 2] },
  ];
  for (const c of cases) {
    test(`${c.shape} axis ${c.axis}${c.keepDims ? ' keepDims' : ''}`, async () => {
      const data = rand(c.shape, 31).map((v, i) => v + (i % 7)); // nonzero means
      await assertMatchesCpu('sum', () => tf.sum(tf.tensor(data, c.shape), c.axis, c.keepDims));
      await assertMatchesCpu('mean', () => tf.mean(tf.tensor(data, c.shape), c.axis, c.keepDims));
      // The JavaScript path, where WebAssembly SIMD is missing.
      const prev = setSimdKernelsEnabled(false);
      try {
        await assertMatchesCpu('sum (JS)', () => tf.sum(tf.tensor(data, c.shape), c.axis, c.keepDims));
        await assertMatchesCpu('mean (JS)', () => tf.mean(tf.tensor(data, c.shape), c.axis, c.keepDims));
      } finally {
        setSimdKernelsEnabled(prev);
      }
    });
  }
  test('int32 sum', async () => {
    const data = Int32Array.from(rand([6, 5, 4], 32), (v) => Math.round(v * 100));
    await assertMatchesCpu('sum int32', () => tf.sum(tf.tensor(data, [6, 5, 4], 'int32'), [0, 1]), 0);
  });
  test('no leaked tensors or data ids', async () => {
    const data = rand([4, 8, 8, 16], 33);
    await assertNoLeak('sum', () => tf.sum(tf.tensor(data, [4, 8, 8, 16]), [0, 1, 2]));
    await assertNoLeak('mean', () => tf.mean(tf.tensor(data, [4, 8, 8, 16]), [0, 1, 2], true));
  });
});

describe('Identity', () => {
  test('shares the data (no copy); the clone outlives its source; variables keep their values', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as BackendWasm;
    const x = tf.tensor([1, 2, 3, 4], [2, 2]);
    const ids = backend.numDataIds();
    const y = tf.engine().runKernel(tf.Identity, { x }) as tf.Tensor;
    assert.equal(backend.numDataIds(), ids, 'no new data');
    x.dispose();
    assert.deepEqual(Array.from(y.dataSync()), [1, 2, 3, 4]);
    // A variable assigned after a clone was taken: the clone keeps the old value.
    const v = tf.variable(tf.tensor([5, 6]));
    const saved = tf.clone(v);
    v.assign(tf.tensor([7, 8]));
    assert.deepEqual(Array.from(saved.dataSync()), [5, 6]);
    assert.deepEqual(Array.from(v.dataSync()), [7, 8]);
    tf.dispose([y, v, saved]);
  });
  test('matches cpu (int32, bool, float32) and leaks nothing', async () => {
    await assertMatchesCpu('float32', () => tf.clone(tf.tensor(rand([3, 4, 5], 40), [3, 4, 5])), 0);
    await assertMatchesCpu('int32', () => tf.clone(tf.tensor([1, -2, 3], [3], 'int32')), 0);
    await assertMatchesCpu('bool', () => tf.cast(tf.clone(tf.tensor([1, 0, 1], [3], 'bool')), 'float32'), 0);
    await assertNoLeak('identity', () => tf.clone(tf.tensor(rand([4, 4], 41), [4, 4])));
  });
});

describe('end to end', () => {
  const shapes = {
    x: [4, 12, 12, 3],
    w1: [3, 3, 3, 8],
    gamma: [8],
    beta: [8],
    w2: [3, 3, 8, 6],
    w3: [1, 1, 6, 6],
    dense: [6 * 6 * 6, 5],
    target: [4, 5],
  };
  const data = Object.fromEntries(Object.entries(shapes).map(([k, s], i) => [k, rand(s, 100 + i)])) as Record<keyof typeof shapes, Float32Array>;

  /** conv 3x3 -> batchNorm (batch moments) -> relu -> conv 3x3 s2 -> conv 1x1 -> dense -> mean loss. */
  async function grads(backendName: 'wasm' | 'cpu'): Promise<{ loss: number; grads: Record<string, Result> }> {
    await tf.setBackend(backendName);
    const vars = tf.tidy(() => ({
      w1: tf.variable(tf.tensor(data.w1, shapes.w1)),
      gamma: tf.variable(tf.tensor(data.gamma, shapes.gamma).add(1.5)),
      beta: tf.variable(tf.tensor(data.beta, shapes.beta)),
      w2: tf.variable(tf.tensor(data.w2, shapes.w2)),
      w3: tf.variable(tf.tensor(data.w3, shapes.w3)),
      dense: tf.variable(tf.tensor(data.dense, shapes.dense)),
    }));
    const x = tf.tensor4d(data.x, shapes.x as [number, number, number, number]);
    const target = tf.tensor(data.target, shapes.target);
    const { value, grads: g } = tf.variableGrads(() => {
      const h1 = tf.conv2d(x, vars.w1 as tf.Tensor4D, 1, 'same');
      const { mean, variance } = tf.moments(h1, [0, 1, 2]);
      const bn = tf.batchNorm(h1, mean, variance, vars.beta, vars.gamma, 1e-3);
      const h2 = tf.conv2d(tf.relu(bn) as tf.Tensor4D, vars.w2 as tf.Tensor4D, 2, 'same');
      const h3 = tf.conv2d(h2, vars.w3 as tf.Tensor4D, 1, 'valid');
      const logits = tf.matMul(tf.reshape(h3, [4, -1]), vars.dense);
      return tf.mean(tf.mul(logits, target)) as tf.Scalar;
    }, Object.values(vars));
    const out: Record<string, Result> = {};
    for (const [name, v] of Object.entries(vars)) {
      const t = g[v.name];
      out[name] = { shape: t.shape, data: t.dataSync() };
    }
    const loss = value.dataSync()[0];
    tf.dispose([value, x, target, ...Object.values(g), ...Object.values(vars)]);
    return { loss, grads: out };
  }

  test('tf.variableGrads of conv -> batchNorm -> relu -> conv -> dense -> mean matches cpu', async () => {
    const w = await grads('wasm');
    const c = await grads('cpu');
    assert.ok(Math.abs(w.loss - c.loss) <= RTOL * Math.max(1, Math.abs(c.loss)), `loss ${w.loss} vs ${c.loss}`);
    for (const name of Object.keys(c.grads)) {
      assert.deepEqual(w.grads[name].shape, c.grads[name].shape, name);
      const err = relError(w.grads[name].data, c.grads[name].data);
      assert.ok(err <= RTOL, `grad ${name}: relative error ${err.toExponential(2)}`);
    }
  });

  test('repeated training-style gradient steps leak nothing', async () => {
    await grads('wasm');
    await tf.setBackend('wasm');
    const backend = tf.backend() as BackendWasm;
    const tensors = tf.memory().numTensors;
    const ids = backend.numDataIds();
    await grads('wasm');
    await grads('wasm');
    await tf.setBackend('wasm');
    assert.equal(tf.memory().numTensors, tensors);
    assert.equal(backend.numDataIds(), ids);
  });
});

describe('ChorusBatchNorm (fused BatchNorm + ReLU, WebAssembly SIMD)', { skip: !simdSupported() && 'no WebAssembly SIMD' }, () => {
  interface BnCase {
    name: string;
    x: Shape;
    groups: number;
    relu: boolean;
  }
  // The presets' BatchNorm inputs at micro-batch 32 (BatchNorm groups of 32, or 8 as in the
  // equivalence test), a batch of several groups, and channel counts with scalar tails.
  const bnCases: BnCase[] = [
    { name: 'resnet20v2 stem 16ch', x: [32, 32, 32, 16], groups: 1, relu: true },
    { name: 'resnet20v2 stack2 64ch, 4 groups of 8', x: [32, 16, 16, 64], groups: 4, relu: true },
    { name: 'resnet20v2 head 256ch', x: [32, 8, 8, 256], groups: 1, relu: true },
    { name: 'no ReLU, 2 groups', x: [16, 8, 8, 128], groups: 2, relu: false },
    { name: 'tail channels 18', x: [6, 5, 7, 18], groups: 3, relu: true },
    { name: 'tail channels 3, no ReLU', x: [4, 4, 4, 3], groups: 2, relu: false },
    { name: 'rank 2 [n, c]', x: [12, 10], groups: 3, relu: true },
  ];

  /** The model's composed BatchNorm (+ ReLU): per-group moments, then scale and shift. */
  function composed(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, c: BnCase): tf.Tensor[] {
    const ch = c.x[c.x.length - 1];
    const grouped = tf.reshape(x, [c.groups, -1, ch]);
    const { mean, variance } = tf.moments(grouped, [1], true);
    const scale = tf.mul(tf.rsqrt(tf.add(variance, 1e-3)), gamma);
    const y = tf.reshape(tf.add(tf.mul(tf.sub(grouped, mean), scale), beta), c.x);
    return [c.relu ? tf.relu(y) : y, tf.reshape(mean, [c.groups, ch]), tf.reshape(variance, [c.groups, ch])];
  }

  function fused(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, c: BnCase): tf.Tensor[] {
    return tf.engine().runKernel(BATCH_NORM_KERNEL, { x, gamma, beta }, { groups: c.groups, epsilon: 1e-3, relu: c.relu } as unknown as tf.NamedAttrMap) as tf.Tensor[];
  }

  /** Output `which` (0: y, 1: mean, 2: variance), or the gradient `which - 3` (x, gamma, beta) of sum(y * dy). */
  function bnFn(c: BnCase, impl: typeof composed, which: number, seed: number): () => tf.Tensor {
    const ch = c.x[c.x.length - 1];
    const xv = rand(c.x, seed).map((v, i) => 3 * v + (i % ch) * 0.25); // channel means away from 0
    const gv = rand([ch], seed + 1).map((v) => v + 1.5);
    const bv = rand([ch], seed + 2);
    const dyv = rand(c.x, seed + 3);
    return () => {
      const x = tf.tensor(xv, c.x);
      const gamma = tf.tensor(gv);
      const beta = tf.tensor(bv);
      if (which < 3) return impl(x, gamma, beta, c)[which];
      const dy = tf.tensor(dyv, c.x);
      return tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(impl(a, g, b, c)[0], dy)))([x, gamma, beta])[which - 3];
    };
  }

  const outputs = ['y', 'mean', 'variance', 'dx', 'dgamma', 'dbeta'];
  bnCases.forEach((c, i) => {
    test(`${c.name}: x ${c.x}, ${c.groups} group(s)${c.relu ? ', ReLU' : ''}: outputs and gradients match cpu`, async () => {
      for (const [which, name] of outputs.entries()) {
        await assertMatchesCpu(`${c.name} ${name}`, bnFn(c, fused, which, 10 * i + 1), RTOL, bnFn(c, composed, which, 10 * i + 1));
      }
    });
  });

  test('bit-identical from run to run; no leaked tensors or data ids', async () => {
    for (const which of [0, 3, 4]) {
      const a = await runOn('wasm', bnFn(bnCases[1], fused, which, 5));
      const b = await runOn('wasm', bnFn(bnCases[1], fused, which, 5));
      assert.deepEqual(b.data, a.data);
      await assertNoLeak(`${bnCases[1].name} ${outputs[which]}`, bnFn(bnCases[1], fused, which, 5));
    }
  });

  test('is registered with its gradient kernel', () => {
    assert.ok(tf.getKernel(BATCH_NORM_KERNEL, 'wasm') != null);
    assert.ok(tf.getKernel(BATCH_NORM_GRAD_KERNEL, 'wasm') != null);
    assert.ok(tf.getGradient(BATCH_NORM_KERNEL) != null);
  });
});
