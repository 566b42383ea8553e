import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ErrorFeedback,
  encodeMessage,
  fp16Codec,
  fp32Codec,
  int8Codec,
  parseMessage,
  type CodecName,
  type GradientMessage,
  type Message,
  type Update,
} from '../src/index.js';
import { BN_STATS, LIMITS, PARAMS, floats, sampleMessages } from './fixtures.js';

/** A gradient message whose sum (PARAMS values) is encoded by `codec`. */
function gradientIn(codec: typeof fp16Codec): GradientMessage {
  const { values, scales } = new ErrorFeedback(codec, PARAMS).encode(floats(PARAMS).map((x, i) => (i === 2 ? 3 : x)));
  const { gradient: _, ...rest } = sampleMessages().gradient;
  return { ...rest, gradient: values, ...(scales ? { scales } : {}) };
}

function roundTrip(message: Message, codec: CodecName): Message {
  return parseMessage(encodeMessage(message), { ...LIMITS, codec });
}

function refused(message: Record<string, unknown>, codec: CodecName, code: string, pattern: RegExp): void {
  assert.throws(() => parseMessage(encodeMessage(message as unknown as Message), { ...LIMITS, codec }), (error: unknown) => {
    assert.equal((error as { code?: string }).code, code, (error as Error).message);
    assert.match((error as Error).message, pattern);
    return true;
  });
}

test('fp16 and int8 gradients travel as u16 and i8 tails and decode to what was sent', () => {
  for (const codec of [fp16Codec, int8Codec]) {
    const sent = gradientIn(codec);
    const got = roundTrip(sent, codec.name) as GradientMessage;
    assert.equal(got.gradient.constructor, sent.gradient.constructor);
    assert.deepEqual(codec.decode({ values: got.gradient, scales: got.scales }, PARAMS), codec.decode({ values: sent.gradient, scales: sent.scales }, PARAMS));
  }
  const frame16 = encodeMessage(gradientIn(fp16Codec));
  const frame32 = encodeMessage(sampleMessages().gradient);
  assert.ok(frame16.length < frame32.length);
});

test('a gradient in another codec than the run\'s is refused as bad-gradient', () => {
  refused({ ...gradientIn(fp16Codec) }, 'int8', 'bad-gradient', /gradient\.gradient is encoded as fp16; this run's codec is int8/);
  refused({ ...gradientIn(int8Codec) }, 'fp16', 'bad-gradient', /encoded as int8; this run's codec is fp16/);
  refused({ ...sampleMessages().gradient }, 'fp16', 'bad-gradient', /encoded as fp32; this run's codec is fp16/);
  refused({ ...gradientIn(fp16Codec) }, 'fp32', 'bad-gradient', /encoded as fp16; this run's codec is fp32/);
});

test('malformed compressed gradients are refused as bad-gradient: NaN/Inf halves and scales, lengths, block counts', () => {
  const half = gradientIn(fp16Codec);
  for (const bits of [0x7c00, 0xfe00]) {
    const values = Uint16Array.from(half.gradient as Uint16Array);
    values[4] = bits;
    refused({ ...half, gradient: values }, 'fp16', 'bad-gradient', /gradient\.gradient: fp16 element 4 of 10 is (infinite|NaN)/);
  }
  refused({ ...half, gradient: new Uint16Array(PARAMS + 1) }, 'fp16', 'bad-gradient', /has 11 elements; expected 10/);
  refused({ ...half, scales: new Float32Array(1) }, 'fp16', 'bad-gradient', /only int8 values carry scales/);

  const q = gradientIn(int8Codec);
  for (const [scale, pattern] of [
    [NaN, /scale 0 is NaN/],
    [Infinity, /scale 0 is Infinity/],
    [-2, /negative/],
    [1e38, /overflow/],
  ] as const) {
    refused({ ...q, scales: Float32Array.from([scale]) }, 'int8', 'bad-gradient', pattern);
  }
  refused({ ...q, scales: new Float32Array(2) }, 'int8', 'bad-gradient', /2 scales for 10 int8 values; expected 1/);
  refused({ ...q, scales: new Float32Array(0) }, 'int8', 'bad-gradient', /0 scales/);
  refused({ ...q, scales: undefined }, 'int8', 'bad-gradient', /int8 values need scales/);
  refused({ ...q, gradient: new Int8Array(PARAMS - 1) }, 'int8', 'bad-gradient', /has 9 elements; expected 10/);
  const min = Int8Array.from(q.gradient as Int8Array);
  min[0] = -128;
  refused({ ...q, gradient: min }, 'int8', 'bad-gradient', /-128/);
});

test('updates carry either full fp32 params or a delta in the run\'s codec, never both or neither', () => {
  const base = sampleMessages().update;
  const { values, scales } = int8Codec.encode(floats(PARAMS));
  const delta: Update = { type: 'update', v: base.v, version: 3, delta: values, scales, bnStats: floats(BN_STATS) };
  const got = roundTrip(delta, 'int8') as Update;
  assert.deepEqual(got.delta, values);
  assert.equal(got.params, undefined);
  refused({ ...delta }, 'fp16', 'malformed', /update\.delta is encoded as int8; this run's codec is fp16/);
  refused({ ...base }, 'int8', 'malformed', /update\.params in an int8 run, which updates by delta/);
  // A float32 delta is fp32's dtype, and still no fp32 update: those carry full params.
  const { values: f32 } = fp32Codec.encode(floats(PARAMS));
  refused({ ...delta, delta: f32, scales: undefined }, 'fp32', 'malformed', /update\.delta in an fp32 run, which updates by full params/);
  refused({ ...delta, params: floats(PARAMS) }, 'int8', 'malformed', /exactly one of params/);
  refused({ ...delta, delta: undefined, scales: undefined }, 'int8', 'malformed', /exactly one of params/);
  refused({ ...delta, scales: Float32Array.from([NaN]) }, 'int8', 'malformed', /scale 0 is NaN/);
  assert.deepEqual((roundTrip(base, 'fp32') as Update).params, base.params);
});
