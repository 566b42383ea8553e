/**
 * Where a training step's time goes, by kernel, on the WASM backend: every kernel registered
 * for 'wasm' (stock and Chorus) is wrapped with a timer, then resnet20v2 (or another preset)
 * trains a few steps through the Replica exactly as a worker does. WASM kernels run
 * synchronously, so the wall time of a kernel function is its cost; what is left of the step
 * is the engine (tape, tidy, gradient bookkeeping), the optimizer and the read-back.
 *
 *   cd apps/local-trainer && npx tsx bench/kernel-profile.bench.ts [--model=resnet20v2] [--batch=32] [--steps=3] [--shapes] [--baseline]
 *
 * --baseline: without what the WebAssembly SIMD work added (fused BatchNorm, the direct filter
 * gradient, SIMD Sum/Mean, the copy-free Identity): the kernels as they were before it, for a
 * before/after in the same conditions.
 *
 * Kernels called by other kernels (the stock code Chorus' kernels call, through the registry or
 * not) are counted once, in the kernel the engine ran. --shapes splits each kernel by its first input's shape.
 * Prints a markdown table of the per-step mean over the timed steps (the first step warms up).
 */
import * as tf from '@tensorflow/tfjs';
import { BATCH_NORM_GRAD_KERNEL, BATCH_NORM_KERNEL, setSimdKernelsEnabled, unregisterWasmTrainingKernels } from '@chorus/backend';
import { selectNodeBackend } from '@chorus/backend/node';
import { PRESETS, initialParams } from '@chorus/model';
import { Replica, createOptimizer } from '@chorus/train';

const arg = (name: string, fallback: string): string => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const model = arg('model', 'resnet20v2') as keyof typeof PRESETS;
const batch = Number(arg('batch', '32'));
const steps = Number(arg('steps', '3'));
const byShape = process.argv.includes('--shapes');
const baseline = process.argv.includes('--baseline');

tf.env().set('PROD', true);
await selectNodeBackend({ force: 'wasm' });
if (baseline) {
  setSimdKernelsEnabled(false);
  for (const name of [BATCH_NORM_KERNEL, BATCH_NORM_GRAD_KERNEL]) tf.unregisterKernel(name, 'wasm');
  unregisterWasmTrainingKernels([tf.Identity]);
}

interface Tally {
  ms: number;
  calls: number;
}
const tallies = new Map<string, Tally>();
let recording = false;
/** Kernels running now: a kernel another one calls through the registry is counted in its caller. */
let depth = 0;

// Wrap every kernel the wasm backend has (after Chorus registered its own).
for (const config of tf.getKernelsForBackend('wasm')) {
  const inner = config.kernelFunc;
  const name = config.kernelName;
  const wrapped: tf.KernelFunc = (args) => {
    if (!recording || depth > 0) return inner(args);
    const t0 = performance.now();
    depth++;
    let out: ReturnType<tf.KernelFunc>;
    try {
      out = inner(args);
    } finally {
      depth--;
    }
    const ms = performance.now() - t0;
    let key = name;
    if (byShape) {
      const first = Object.values(args.inputs)[0];
      const attrs = args.attrs as Record<string, unknown> | undefined;
      const extra = attrs?.filterShape ?? (name === tf.Conv2DBackpropInput ? (args.inputs.filter as tf.TensorInfo).shape : undefined);
      key = `${name} [${first?.shape.join(',') ?? ''}]${extra != null ? ` w[${String(extra)}]` : ''}${attrs?.strides != null ? ` s${String(attrs.strides)}` : ''}`;
    }
    const t = tallies.get(key) ?? { ms: 0, calls: 0 };
    t.ms += ms;
    t.calls++;
    tallies.set(key, t);
    return out;
  };
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ ...config, kernelFunc: wrapped });
}

const spec = PRESETS[model];
const replica = new Replica(spec, { microBatch: 32, bnGroup: 32 });
const params = initialParams(replica.layout, 1);
const optimizer = createOptimizer('sgd', replica.layout, { weightDecay: 5e-4 });
const images = new Float32Array(batch * 32 * 32 * 3).map((_, i) => Math.sin(i));
const labels = new Uint8Array(batch).map((_, i) => i % 10);
const mean = new Float32Array(replica.layout.paramCount);
let stepMs = 0;
for (let i = 0; i < steps + 1; i++) {
  recording = i > 0;
  const t0 = performance.now();
  replica.setParams(params);
  const g = await replica.computeGradients(images, labels);
  for (let j = 0; j < mean.length; j++) mean[j] = g.gradient[j] / g.count;
  optimizer.apply(params, mean, 0.01);
  if (i > 0) stepMs += performance.now() - t0;
}
replica.dispose();

const perStep = (ms: number) => ms / steps;
const rows = [...tallies.entries()].sort((a, b) => b[1].ms - a[1].ms);
const kernelMs = rows.reduce((s, [, t]) => s + t.ms, 0);
console.log(`${model}, batch ${batch} (micro-batches of 32), wasm${baseline ? ' without the SIMD kernels (--baseline)' : ''}, ${steps} steps: ${perStep(stepMs).toFixed(0)} ms/step, ${((batch * 1000) / perStep(stepMs)).toFixed(1)} images/s\n`);
console.log('| kernel | calls/step | ms/step | share of step |');
console.log('| --- | ---: | ---: | ---: |');
for (const [key, t] of rows) {
  if (perStep(t.ms) < 0.05 && !byShape) continue;
  console.log(`| ${key} | ${t.calls / steps} | ${perStep(t.ms).toFixed(1)} | ${((100 * t.ms) / stepMs).toFixed(1)}% |`);
}
const small = rows.filter(([, t]) => perStep(t.ms) < 0.05);
if (!byShape && small.length > 0) {
  const ms = small.reduce((s, [, t]) => s + t.ms, 0);
  console.log(`| ${small.length} other kernels | ${small.reduce((s, [, t]) => s + t.calls, 0) / steps} | ${perStep(ms).toFixed(1)} | ${((100 * ms) / stepMs).toFixed(1)}% |`);
}
console.log(`| all kernels | ${rows.reduce((s, [, t]) => s + t.calls, 0) / steps} | ${perStep(kernelMs).toFixed(0)} | ${((100 * kernelMs) / stepMs).toFixed(1)}% |`);
console.log(`| outside kernels (engine, optimizer, read-back) | | ${perStep(stepMs - kernelMs).toFixed(0)} | ${((100 * (stepMs - kernelMs)) / stepMs).toFixed(1)}% |`);
