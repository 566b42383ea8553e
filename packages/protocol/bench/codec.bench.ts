/**
 * Encode/decode cost of the largest hot-path message: a gradient the size of the default
 * ResNet's weights (2.3 MB of float32). Prints timings; asserts nothing, since timings depend
 * on the machine and its load.
 *
 *   npx tsx bench/codec.bench.ts
 */
import { FrameWriter, decodeFrame, encodeMessage, parseMessage, type GradientMessage } from '../src/index.js';

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

function time(label: string, run: () => unknown): void {
  for (let i = 0; i < 20; i++) run();
  const samples: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const start = performance.now();
    run();
    samples.push(performance.now() - start);
  }
  samples.sort((a, b) => a - b);
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
