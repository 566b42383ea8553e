/**
 * Encode/decode cost of the largest hot-path message: a gradient the size of the default
 * ResNet's weights (2.3 MB of float32). Prints timings; asserts nothing, since timings depend
 * on the machine and its load.
 *
 *   npx tsx bench/codec.bench.ts
 */
import { FrameWriter, GRADIENT_CODEC_NAMES, PublicWeights, decodeFrame, encodeMessage, fp16Codec, fp32Codec, getGradientCodec, int8Codec, parseMessage, residentVectors, setVectorKernelsEnabled, type GradientMessage } from '../src/index.js';
import { payloadProblem } from '../src/gradient-codec.js';

const PARAMS = 575_000; // 2.3 MB
const BN_STATS = 2_000;
const ROUNDS = 200;

const gradient = Float32Array.from({ length: PARAMS }, (_, i) => Math.sin(i) * 1e-3);
const message: GradientMessage = {
  type: 'gradient',
  v: 1,
  step: 1,
  shardId: 0,
  count: 128,
  lossSum: 295.1,
  correct: 17,
  computeMs: 812,
  gradient,
  bnMoments: new Float32Array(BN_STATS),
};
const limits = { paramCount: PARAMS, bnStatCount: BN_STATS, maxShardExamples: 1024 };

/** The times (ms) of `rounds` runs after 20 warm-up runs, sorted. */
function timings(run: () => unknown, rounds: number): number[] {
  for (let i = 0; i < 20; i++) run();
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const start = performance.now();
    run();
    samples.push(performance.now() - start);
  }
  return samples.sort((a, b) => a - b);
}

function time(label: string, run: () => unknown): void {
  const samples = timings(run, ROUNDS);
  const median = samples[samples.length >> 1];
  const p90 = samples[Math.floor(samples.length * 0.9)];
  const gbps = (gradient.byteLength / 1e9) / (median / 1e3);
  console.log(`${label.padEnd(44)} median ${median.toFixed(3)} ms  p90 ${p90.toFixed(3)} ms  (${gbps.toFixed(1)} GB/s)`);
}

const frame = encodeMessage(message);
const unaligned = new Uint8Array(frame.length + 1).subarray(1);
unaligned.set(frame);
const writer = new FrameWriter();

console.log(`gradient ${(gradient.byteLength / 1e6).toFixed(2)} MB, frame ${frame.length} bytes, ${ROUNDS} rounds`);
time('encodeMessage (fresh frame)', () => encodeMessage(message));
time('FrameWriter.encode (reused buffer)', () => writer.encode(message));
time('decodeFrame, aligned (views)', () => decodeFrame(frame));
time('decodeFrame, unaligned (copies)', () => decodeFrame(unaligned));
time('parseMessage + limits (decode + validate)', () => parseMessage(frame, limits));
time('encodeMessage + parseMessage round trip', () => parseMessage(encodeMessage(message), limits));
time('FrameWriter + parseMessage round trip', () => parseMessage(writer.encode(message), limits));

// The codecs' vector loops, JavaScript against the WebAssembly SIMD kernels (same bits; see
// test/vector-kernels.test.ts), at this gradient's size, copies into the module's memory included.
console.log('\nvector loops, JavaScript -> WebAssembly SIMD (median ms):');
const target = new Float32Array(PARAMS);
const lost = new Float32Array(PARAMS);
const payloads = Object.fromEntries(GRADIENT_CODEC_NAMES.map((c) => [c, getGradientCodec(c).encode(gradient)]));
const master = gradient.map((x) => x + 1e-4);
const [residentSum] = residentVectors([PARAMS], 4 * PARAMS);
const kept = new PublicWeights(int8Codec, gradient);
// Two masters in turn, so every advance moves the public weights by about 2e-4.
const masters = [master, gradient.map((x) => x - 1e-4)];
let flip = 0;
const loops: [string, () => unknown][] = [
  ['addTo, fp32', () => fp32Codec.addTo(payloads.fp32!, target)],
  ['addTo, fp16', () => fp16Codec.addTo(payloads.fp16!, target)],
  ['addTo, int8', () => int8Codec.addTo(payloads.int8!, target)],
  ['parseMessage of an fp32 gradient (NaN scan)', () => parseMessage(frame, limits)],
  ['int8 payload check (-128 scan, scales)', () => payloadProblem(payloads.int8!)],
  ['encode with error feedback, fp16', () => fp16Codec.encode(gradient, lost)],
  ['encode with error feedback, int8', () => int8Codec.encode(gradient, lost)],
  // As the coordinator has them: a sum and public weights kept for the run, resident in the
  // kernels' arena (EmbeddedSimdModule.arena), so only the payload or the master is copied in.
  ['addTo into a resident sum, fp32', () => fp32Codec.addTo(payloads.fp32!, residentSum)],
  ['addTo into a resident sum, int8', () => int8Codec.addTo(payloads.int8!, residentSum)],
  ['public weights: advance (kept, resident), int8', () => kept.advance(masters[flip++ % 2]!)],
];
const median = (run: () => unknown) => timings(run, 50)[25]!;
for (const [label, run] of loops) {
  setVectorKernelsEnabled(false);
  const js = median(run);
  setVectorKernelsEnabled(true);
  const simd = median(run);
  console.log(`${label.padEnd(44)} ${js.toFixed(3)} -> ${simd.toFixed(3)} ms`);
}
