/**
 * The model's training forward pass (@chorus/model forward, BatchNorm in batch mode) on WASM
 * with the fused BatchNorm + ReLU kernels equals the same pass composed of tfjs ops (the path
 * every other backend takes): logits, pooled BatchNorm statistics and every parameter's
 * gradient, on presets whose channel counts take the vector loops (resnet20v2) and the scalar
 * tails (tiny: 4 channels in the stem, then 8 and 16), with several BatchNorm groups.
 */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { PRESETS, buildGraph, forward, initialParams, paramTensors, weightLayout, type ResNetV2Spec } from '@chorus/model';
import { registerWasmTrainingKernels } from '../src/index.js';
import { BATCH_NORM_KERNEL } from '../src/wasm/batch-norm.js';
import { simdSupported } from '../src/wasm/simd/module.js';

const RTOL = 1e-4;

before(async () => {
  await tf.setBackend('wasm');
  registerWasmTrainingKernels();
});

/** max |a - b| / max |b|. */
function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let ref = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    ref = Math.max(ref, Math.abs(b[i]));
  }
  return ref === 0 ? diff : diff / ref;
}

function maxAbs(values: Float32Array[]): number {
  return Math.max(...values.map((v) => v.reduce((m, x) => Math.max(m, Math.abs(x)), 0)));
}

/** Logits, batch statistics and gradients, each flattened, in that order. */
function run(spec: ResNetV2Spec, batch: number, groupSize: number): Float32Array[] {
  const graph = buildGraph(spec);
  const layout = weightLayout(graph);
  const params = paramTensors(layout, initialParams(layout, 7)).map((t) => tf.variable(t));
  const n = batch * spec.inputShape[0] * spec.inputShape[1] * spec.inputShape[2];
  const x = tf.tensor4d(new Float32Array(n).map((_, i) => Math.sin(i * 0.37)), [batch, ...spec.inputShape]);
  const dLogits = tf.tensor2d(new Float32Array(batch * spec.classes).map((_, i) => Math.cos(i)), [batch, spec.classes]);
  let stats: tf.Tensor[] = [];
  let logits: tf.Tensor | null = null;
  const { grads, value } = tf.variableGrads(() => {
    const out = forward(graph, layout, params, x, { kind: 'batch', groupSize });
    stats = out.batchStats.flatMap((s) => [tf.keep(s.mean), tf.keep(s.variance)]);
    logits = tf.keep(out.logits);
    return tf.sum(tf.mul(out.logits, dLogits)) as tf.Scalar;
  }, params);
  const values = [logits!, ...stats, ...params.map((p) => grads[p.name])].map((t) => t.dataSync() as Float32Array);
  tf.dispose([value, logits!, ...stats, ...Object.values(grads), ...params, x, dLogits]);
  return values;
}

for (const [name, spec, batch, group] of [
  ['resnet20v2', PRESETS.resnet20v2, 8, 4],
  ['tiny', PRESETS.tiny, 12, 4],
] as const) {
  test(`${name}, batch ${batch} in BatchNorm groups of ${group}: fused equals composed (logits, statistics, gradients)`, { skip: !simdSupported() && 'no WebAssembly SIMD' }, async () => {
    await tf.setBackend('wasm');
    registerWasmTrainingKernels();
    const info = await tf.profile(() => {
      const graph = buildGraph(spec);
      const layout = weightLayout(graph);
      const params = paramTensors(layout, initialParams(layout, 7));
      const x = tf.zeros([batch, ...spec.inputShape]) as tf.Tensor4D;
      return forward(graph, layout, params, x, { kind: 'batch', groupSize: group }).logits;
    });
    const bnLayers = buildGraph(spec).nodes.filter((node) => node.op === 'bn').length;
    assert.equal(info.kernels.filter((k) => k.name === BATCH_NORM_KERNEL).length, bnLayers, 'every BatchNorm runs the fused kernel');
    // (ReLUs of the [C] pooled variances remain.)
    const activationRelus = info.kernels.filter((k) => k.name === 'Relu' && k.inputShapes[0]!.length === 4);
    assert.equal(activationRelus.length, 0, 'every ReLU is fused into its BatchNorm');

    const fused = run(spec, batch, group);
    tf.unregisterKernel(BATCH_NORM_KERNEL, 'wasm');
    let composed: ReturnType<typeof run>;
    try {
      composed = run(spec, batch, group);
    } finally {
      registerWasmTrainingKernels();
    }
    assert.equal(fused.length, composed.length);
    const graph = buildGraph(spec);
    const layout = weightLayout(graph);
    const firstGrad = fused.length - layout.params.length;
    // Conv biases: every conv output reaches the loss only through BatchNorms, which remove
    // constant shifts, so their gradients are zero but for rounding noise and border effects;
    // noise differs between any two summation orders (wasm and cpu as well), so these are
    // compared on the scale of the largest gradient rather than their own.
    const convs = new Set(graph.nodes.filter((n) => n.op === 'conv').map((n) => n.name));
    const largest = maxAbs(composed.slice(firstGrad));
    fused.forEach((v, i) => {
      const param = i >= firstGrad ? layout.params[i - firstGrad] : null;
      if (param != null && param.kind === 'bias' && convs.has(param.layer)) {
        const err = relError(v, composed[i]) * (maxAbs([composed[i]]) / largest);
        assert.ok(err <= RTOL, `${param.name}: error ${err.toExponential(2)} of the largest gradient`);
        return;
      }
      const err = relError(v, composed[i]);
      assert.ok(err <= RTOL, `${param?.name ?? `output ${i}`}: relative error ${err.toExponential(2)}`);
    });
  });
}
