import { EXAMPLE_BYTES, PROTOCOL_VERSION, type Message, type MessageType } from '../src/index.js';

export const PARAMS = 10;
export const BN_STATS = 4;
export const LIMITS = { paramCount: PARAMS, bnStatCount: BN_STATS, maxShardExamples: 8 };

/** Distinct, awkward values (negative zero, subnormal, extremes) so bit-exactness is tested. */
export function floats(n: number, seed = 1): Float32Array {
  const special = [-0, 1.4e-45, 3.4028234663852886e38, -1.5, 1 / 3];
  return Float32Array.from({ length: n }, (_, i) => (i < special.length ? special[i] : Math.sin(seed * 1000 + i) * 1e3));
}

function pixels(examples: number): Uint8Array {
  return Uint8Array.from({ length: EXAMPLE_BYTES * examples }, (_, i) => (i * 7) & 255);
}

/** One valid message of every type, built fresh each call so tests may mutate them. */
export function sampleMessages(): { [K in MessageType]: Extract<Message, { type: K }> } {
  const v = PROTOCOL_VERSION;
  return {
    hello: {
      type: 'hello',
      v,
      token: 'secret',
      runtime: { kind: 'node', backend: 'tensorflow', device: 'Ryzen 9 ✓', cores: 16, microBatch: 64, agent: 'node 20' },
      workerId: 'w-1',
    },
    welcome: {
      type: 'welcome',
      v,
      workerId: 'w-1',
      run: {
        preset: 'resnet20',
        spec: { depth: 20, widths: [16, 32, 64], bn: { momentum: 0.9 }, note: null },
        paramCount: PARAMS,
        bnStatCount: BN_STATS,
        bnGroup: 16,
        codec: 'fp32',
        heartbeatMs: 2000,
      },
      version: 7,
      params: floats(PARAMS, 2),
      bnStats: floats(BN_STATS, 3),
    },
    assign: {
      type: 'assign',
      v,
      step: 12,
      version: 11,
      shardId: 3,
      indices: Int32Array.from([4, 49999, 0]),
      labels: Uint8Array.from([9, 0, 3]),
      pixels: pixels(3),
      augmentSeed: 0xdeadbeef,
    },
    gradient: {
      type: 'gradient',
      v,
      step: 12,
      shardId: 3,
      count: 3,
      lossSum: 6.907755278982137,
      correct: 1,
      computeMs: 81.25,
      gradient: floats(PARAMS, 4),
      bnMoments: floats(BN_STATS, 5),
    },
    update: { type: 'update', v, version: 12, params: floats(PARAMS, 6), bnStats: floats(BN_STATS, 7) },
    evaluate: { type: 'evaluate', v, evalId: 2, shardId: 0, version: 12, labels: Uint8Array.from([1, 2]), pixels: pixels(2) },
    evalResult: { type: 'evalResult', v, evalId: 2, shardId: 0, count: 2, lossSum: 1.25, correct: 2 },
    heartbeat: { type: 'heartbeat', v, time: 1764180000123.5, hidden: true },
    error: { type: 'error', v, code: 'bad-token', message: 'token refused' },
    bye: { type: 'bye', v, reason: 'shutting down' },
  };
}
