/**
 * The master state's per-step loops, JavaScript against the WebAssembly SIMD kernels (same
 * bits; see test/master-kernels.test.ts): the SGD step (Nesterov momentum, weight decay) and the
 * batch mean, at the sizes of two presets. Prints median times; asserts nothing.
 *
 *   npx tsx bench/master-kernels.bench.ts     (from packages/train)
 */
import { PRESETS, buildGraph, weightLayout } from '@chorus/model';
import { createSgd, setMasterKernelsEnabled, simdMean } from '../src/core.js';

function median(run: () => void): number {
  for (let i = 0; i < 20; i++) run();
  const samples = Array.from({ length: 50 }, () => {
    const start = performance.now();
    run();
    return performance.now() - start;
  }).sort((a, b) => a - b);
  return samples[samples.length >> 1]!;
}

for (const preset of ['resnet20v2', 'resnet56v2'] as const) {
  const layout = weightLayout(buildGraph(PRESETS[preset]));
  const n = layout.paramCount;
  const params = new Float32Array(n).fill(0.01);
  const gradient = Float32Array.from({ length: n }, (_, i) => 1e-3 * Math.sin(i));
  const mean = new Float32Array(n);
  const times = [false, true].map((simd) => {
    setMasterKernelsEnabled(simd);
    const optimizer = createSgd(layout, { momentum: 0.9, nesterov: true, weightDecay: 5e-4 });
    return {
      sgd: median(() => optimizer.apply(params, gradient, 1e-9)),
      mean: median(() => {
        if (!simdMean(gradient, 128, mean)) for (let i = 0; i < n; i++) mean[i] = gradient[i] / 128;
      }),
    };
  });
  console.log(`${preset} (${n.toLocaleString('en-US')} parameters): SGD step ${times[0]!.sgd.toFixed(2)} -> ${times[1]!.sgd.toFixed(2)} ms, batch mean ${times[0]!.mean.toFixed(2)} -> ${times[1]!.mean.toFixed(2)} ms (JavaScript -> SIMD)`);
}
