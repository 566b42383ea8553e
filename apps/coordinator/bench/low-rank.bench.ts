/**
 * What low-rank gradients (--low-rank R, packages/protocol/src/low-rank.ts) cost and save at
 * resnet20v2 size: the payload a worker sends on right and left steps against the full gradient,
 * the factors each update carries, a worker's encoding (error feedback, projection, the codec,
 * and the reconstruction its residual needs) and the coordinator's reconstruction and next
 * factors, once per step, each with the matrix loops in JavaScript and then in the SIMD kernels
 * (the same bits). Prints a table; asserts nothing (timings depend on the machine).
 *
 *   npm run build && npx tsx bench/low-rank.bench.ts   (from apps/coordinator)
 */
import { createRng } from '@chorus/data';
import { PRESETS, buildGraph, weightLayout } from '@chorus/model';
import { LowRankFeedback, LowRankPlan, getGradientCodec, setLowRankKernelsEnabled, sideOfStep, type LowRankSide } from '@chorus/protocol';

const layout = weightLayout(buildGraph(PRESETS.resnet20v2));
const P = layout.paramCount;
const codec = getGradientCodec('int8');
const gradient = Float32Array.from({ length: P }, (_, i) => Math.sin(i * 0.37) * 1e-3);

/** Median ms of `rounds` runs after two warm-up runs. */
function median(run: () => void, rounds = 15): number {
  run();
  run();
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const start = performance.now();
    run();
    samples.push(performance.now() - start);
  }
  return samples.sort((a, b) => a - b)[Math.floor(rounds / 2)]!;
}

const kb = (bytes: number) => (bytes / 1000).toFixed(1);
console.log(`resnet20v2 (${P.toLocaleString('en-US')} parameters); payloads in int8 (full gradient ${kb(codec.wireBytes(P))} KB; fp32 ${kb(4 * P)} KB)\n`);
console.log('| rank | payload up, right / left step (KB) | of the int8 gradient | factors down, R / L (KB) | worker: encode, right / left, JavaScript -> SIMD (ms) | coordinator: reconstruct + next factors, right / left, JavaScript -> SIMD (ms) |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: |');
for (const rank of [1, 2, 4, 8]) {
  const plan = new LowRankPlan(P, layout.params, rank);
  const up = (side: LowRankSide) => codec.wireBytes(plan.payloadLength(side));
  const feedback = new LowRankFeedback(plan, codec);
  const factors: Record<LowRankSide, Float32Array> = { right: plan.initialFactors(createRng(1)), left: new Float32Array(0) };
  const payloadOf = (side: LowRankSide) => codec.expand(feedback.encode(gradient, side, factors[side])) as Float32Array;
  factors.left = plan.nextFactors(payloadOf('right'), 'right');
  const out = new Float32Array(P);
  const timesOn = (simd: boolean) => {
    setLowRankKernelsEnabled(simd);
    return (['right', 'left'] as const).map((side) => {
      const payload = payloadOf(side);
      return {
        worker: median(() => feedback.encode(gradient, side, factors[side])),
        coordinator: median(() => {
          plan.reconstruct(payload, side, factors[side], out);
          plan.nextFactors(payload, side);
        }),
      };
    });
  };
  const [js, simd] = [timesOn(false), timesOn(true)];
  const pair = (piece: 'worker' | 'coordinator', s: 0 | 1) => `${js[s]![piece].toFixed(1)} -> ${simd[s]![piece].toFixed(1)}`;
  const share = (up('right') + up('left')) / 2 / codec.wireBytes(P);
  console.log(
    `| ${rank} | ${kb(up('right'))} / ${kb(up('left'))} | ${(100 * share).toFixed(1)}% | ${kb(4 * plan.factorLength('right'))} / ${kb(4 * plan.factorLength('left'))} | ${pair('worker', 0)} / ${pair('worker', 1)} | ${pair('coordinator', 0)} / ${pair('coordinator', 1)} |`,
  );
}
console.log(`\n(step 0 is a ${sideOfStep(0)} step; sides alternate)`);
