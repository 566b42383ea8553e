/**
 * What a worker's payload leaves out of a real resnet20v2 gradient, as a share of the gradient's
 * norm: under int8 alone, and under --low-rank R with the step-0 factors (random, from the seed)
 * and with the factors one power step later. Error feedback carries that part to the worker's
 * next gradient; it is also what a late shard's residual held before updates named the shards
 * they counted (UncountedShards). The gradient is the one links.bench.ts captures (the first 16
 * training examples at the initial weights, on WASM), computed here if it is not cached yet.
 *
 *   npm run build && npx tsx bench/low-rank-leftover.bench.ts   (from apps/node-worker)
 */
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRng } from '@chorus/data';
import { PRESETS, buildGraph, weightLayout } from '@chorus/model';
import { LowRankPlan, getGradientCodec } from '@chorus/protocol';
import { ensureCapturedGradient, readCapturedGradient } from './captured-gradient.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const cifarDir = process.env.CHORUS_CIFAR_DIR ?? resolve(root, '../shared/datasets/cifar-10-batches-bin');
// The same file, and the same shard, as links.bench.ts.
const gradientFile = resolve(tmpdir(), 'chorus-bench', 'resnet20v2-bn8-16.grad');
await ensureCapturedGradient(gradientFile, cifarDir, { bnGroup: 8, count: 16 });
const { gradient } = readCapturedGradient(new Uint8Array(await readFile(gradientFile)));

const layout = weightLayout(buildGraph(PRESETS.resnet20v2));
const P = layout.paramCount;
if (gradient.length !== P) throw new Error(`the captured gradient has ${gradient.length} values; resnet20v2 has ${P}`);
const norm = (a: Float32Array) => Math.sqrt(a.reduce((s, x) => s + x * x, 0));
const leftOut = (approximation: Float32Array) => (100 * norm(gradient.map((x, i) => x - approximation[i]!))) / norm(gradient);

const int8 = getGradientCodec('int8');
console.log(`resnet20v2, one captured 16-example gradient: what the payload leaves out, % of the gradient's norm\n`);
console.log('| uplink | step-0 factors (random) | after one power step |');
console.log('| --- | ---: | ---: |');
console.log(`| int8 alone | ${leftOut(int8.expand(int8.encode(gradient)) as Float32Array).toFixed(2)}% | |`);
for (const rank of [1, 2, 4, 8]) {
  const plan = new LowRankPlan(P, layout.params, rank);
  // A right step at the seed's factors, then a left step at the factors that projection gives.
  const right = plan.initialFactors(createRng(1));
  const projection = new Float32Array(plan.payloadLength('right'));
  plan.project(gradient, 'right', right, projection);
  const first = new Float32Array(P);
  plan.reconstruct(projection, 'right', right, first);
  const left = plan.nextFactors(projection, 'right');
  const leftProjection = new Float32Array(plan.payloadLength('left'));
  plan.project(gradient, 'left', left, leftProjection);
  const second = new Float32Array(P);
  plan.reconstruct(leftProjection, 'left', left, second);
  console.log(`| low-rank ${rank} (fp32 payload) | ${leftOut(first).toFixed(1)}% | ${leftOut(second).toFixed(1)}% |`);
}
