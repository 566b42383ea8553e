import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  FLOAT16_MAX,
  GRADIENT_CODEC_NAMES,
  INT8_BLOCK,
  ProtocolError,
  fp16Codec,
  fp32Codec,
  fromFloat16Bits,
  getGradientCodec,
  int8BlockCount,
  int8Codec,
  toFloat16Bits,
} from '../src/index.js';

/** Gradient-like values over many magnitudes, with signs, zeros and a few outliers. */
function gradientLike(n: number, seed = 1): Float32Array {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return Float32Array.from({ length: n }, (_, i) => {
    if (i % 97 === 0) return 0;
    const magnitude = 10 ** (-8 + 10 * next());
    return (next() < 0.5 ? -1 : 1) * magnitude * (i % 1013 === 5 ? 100 : 1);
  });
}

test('fp32 is the identity and never copies', () => {
  const gradient = Float32Array.from([1, -2, 3.5]);
  const payload = fp32Codec.encode(gradient);
  assert.equal(payload.values, gradient);
  assert.equal(payload.scales, undefined);
  assert.equal(fp32Codec.decode(payload, 3), gradient);
  assert.equal(fp32Codec.wireBytes(3), 12);
});

test('fp32 refuses a payload of the wrong length, dtype, scales or a non-finite value', () => {
  assert.throws(() => fp32Codec.decode({ values: new Float32Array(1) }, 2), { name: 'ProtocolError', code: 'bad-gradient', message: /1 elements; expected 2/ });
  assert.throws(() => fp32Codec.decode({ values: new Uint16Array(2) }, 2), { code: 'bad-gradient', message: /must be f32/ });
  assert.throws(() => fp32Codec.decode({ values: new Float32Array(2), scales: new Float32Array(1) }, 2), { code: 'bad-gradient', message: /scales/ });
  assert.throws(() => fp32Codec.decode({ values: Float32Array.from([1, NaN]) }, 2), { code: 'bad-gradient', message: /element 1 of 2 is NaN/ });
});

test('fp16 bits agree with IEEE half precision, rounding to nearest even', () => {
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // tie between 0 and 2^-24: even is 0
    [3 * 2 ** -25, 0x0002], // tie between 1 and 2 quanta: even is 2
    [1 + 2 ** -11, 0x3c00], // tie: even mantissa
    [1 + 3 * 2 ** -11, 0x3c02], // tie: rounds up to even
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
  ];
  for (const [value, bits] of cases) {
    assert.equal(toFloat16Bits(value), bits, `${value}`);
    // Ties are not halves themselves; everything else decodes back to the same value.
    if (Object.is(fromFloat16Bits(bits), value) === false) assert.ok([2 ** -25, 3 * 2 ** -25, 1 + 2 ** -11, 1 + 3 * 2 ** -11].includes(value), `bits ${bits.toString(16)}`);
  }
  assert.ok(Number.isNaN(fromFloat16Bits(toFloat16Bits(NaN))));
  // Every finite half round-trips through float32 unchanged.
  for (let h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) === 0x7c00) continue;
    assert.equal(toFloat16Bits(fromFloat16Bits(h)), h);
  }
});

test('fp16 clamps finite values beyond its range to +-65504 rather than infinity', () => {
  const { values } = fp16Codec.encode(Float32Array.from([65519, 65520, 1e30, -3.4e38]));
  assert.deepEqual(fp16Codec.decode({ values }, 4), Float32Array.from([65504, 65504, 65504, -65504]));
  assert.equal(FLOAT16_MAX, 65504);
});

test('fp16 round trip: relative error at most 2^-11, absolute 2^-25 below the normal range', () => {
  const x = gradientLike(100_000);
  const payload = fp16Codec.encode(x);
  assert.ok(payload.values instanceof Uint16Array);
  const d = fp16Codec.decode(payload, x.length);
  let worst = 0;
  for (let i = 0; i < x.length; i++) {
    const bound = Math.max(Math.abs(x[i]) * 2 ** -11, 2 ** -25);
    const err = Math.abs(d[i] - x[i]);
    assert.ok(err <= bound, `element ${i}: ${x[i]} -> ${d[i]}`);
    if (Math.abs(x[i]) >= 2 ** -14) worst = Math.max(worst, err / Math.abs(x[i]));
  }
  assert.ok(worst > 2 ** -12, `the bound is tight (worst relative error ${worst})`);
  assert.equal(fp16Codec.wireBytes(3), 8);
});

test('fp16 refuses infinities, NaNs, the wrong dtype or length', () => {
  for (const bits of [0x7c00, 0xfc00, 0x7e00, 0x7c01]) {
    assert.throws(() => fp16Codec.decode({ values: Uint16Array.from([0, bits]) }, 2), { code: 'bad-gradient', message: /element 1 of 2 is (NaN|infinite)/ });
  }
  assert.throws(() => fp16Codec.decode({ values: new Uint16Array(3) }, 2), { code: 'bad-gradient', message: /3 elements; expected 2/ });
  assert.throws(() => fp16Codec.decode({ values: new Int8Array(2) }, 2), { code: 'bad-gradient', message: /must be u16/ });
});

test('int8 round trip: per block, the error is at most max|x| / 254', () => {
  const n = 5 * INT8_BLOCK + 17; // a short last block
  const x = gradientLike(n, 3);
  for (let i = 2 * INT8_BLOCK; i < 3 * INT8_BLOCK; i++) x[i] = 0; // an all-zero block
  const payload = int8Codec.encode(x);
  assert.ok(payload.values instanceof Int8Array);
  assert.equal(payload.scales?.length, int8BlockCount(n));
  assert.equal(int8BlockCount(n), 6);
  const d = int8Codec.decode(payload, n);
  for (let b = 0; b < int8BlockCount(n); b++) {
    const block = Array.from(x.subarray(b * INT8_BLOCK, (b + 1) * INT8_BLOCK));
    const max = Math.max(...block.map(Math.abs));
    assert.equal(payload.scales![b], Math.fround(max / 127));
    for (let i = b * INT8_BLOCK; i < Math.min(n, (b + 1) * INT8_BLOCK); i++) {
      // The scale is rounded to float32, which can add a relative 2^-24 to the half-quantum.
      assert.ok(Math.abs(d[i] - x[i]) <= (max / 254) * (1 + 2 ** -20), `element ${i}: ${x[i]} -> ${d[i]} (block max ${max})`);
      assert.ok(Math.abs(payload.values[i]) <= 127);
    }
  }
  for (let i = 2 * INT8_BLOCK; i < 3 * INT8_BLOCK; i++) assert.equal(d[i], 0);
  assert.equal(int8Codec.wireBytes(n), (n + 3 - ((n + 3) % 4)) + 4 * 6);
});

test('int8 keeps values near the float32 maximum finite', () => {
  const x = Float32Array.from({ length: 4 }, (_, i) => (i === 1 ? -3.4028234663852886e38 : i));
  const d = int8Codec.decode(int8Codec.encode(x), 4);
  assert.ok(d.every(Number.isFinite));
  assert.ok(Math.abs(d[1] - x[1]) <= Math.abs(x[1]) / 254 * 1.0001);
});

test('int8 carries a non-finite gradient as a non-finite scale, which decode refuses', () => {
  for (const bad of [NaN, Infinity, -Infinity]) {
    const x = Float32Array.from({ length: 300 }, (_, i) => (i === 260 ? bad : 1));
    const payload = int8Codec.encode(x);
    assert.ok(!Number.isFinite(payload.scales![1]));
    assert.throws(() => int8Codec.decode(payload, 300), { code: 'bad-gradient', message: /scale 1 is/ });
  }
});

test('int8 refuses bad scales, -128, and a wrong block count, dtype or length', () => {
  const good = int8Codec.encode(gradientLike(300));
  const withScales = (scales: Float32Array) => ({ values: good.values, scales });
  for (const [scale, pattern] of [
    [NaN, /scale 0 is NaN/],
    [Infinity, /scale 0 is Infinity/],
    [-1, /negative/],
    [3e38, /overflow float32/],
  ] as const) {
    assert.throws(() => int8Codec.decode(withScales(Float32Array.from([scale, 1])), 300), { code: 'bad-gradient', message: pattern });
  }
  assert.throws(() => int8Codec.decode(withScales(new Float32Array(1)), 300), { code: 'bad-gradient', message: /1 scales for 300 int8 values; expected 2/ });
  assert.throws(() => int8Codec.decode(withScales(new Float32Array(3)), 300), { code: 'bad-gradient', message: /expected 2/ });
  assert.throws(() => int8Codec.decode({ values: good.values }, 300), { code: 'bad-gradient', message: /int8 values need scales/ });
  assert.throws(() => int8Codec.decode(good, 301), { code: 'bad-gradient', message: /300 elements; expected 301/ });
  assert.throws(() => int8Codec.decode({ values: new Uint16Array(300), scales: good.scales }, 300), { code: 'bad-gradient', message: /must be i8/ });
  const q = Int8Array.from(good.values as Int8Array);
  q[5] = -128;
  assert.throws(() => int8Codec.decode({ values: q, scales: good.scales }, 300), { code: 'bad-gradient', message: /element 5 is -128/ });
});

test('getGradientCodec finds each codec and names the known codecs for anything else', () => {
  assert.equal(getGradientCodec('fp32'), fp32Codec);
  assert.equal(getGradientCodec('fp16'), fp16Codec);
  assert.equal(getGradientCodec('int8'), int8Codec);
  assert.deepEqual(GRADIENT_CODEC_NAMES, ['fp32', 'fp16', 'int8']);
  assert.throws(
    () => getGradientCodec('bf16'),
    (error: unknown) => error instanceof ProtocolError && /unknown gradient codec "bf16"; this build knows fp32, fp16, int8/.test(error.message),
  );
  assert.throws(() => getGradientCodec('toString'), /unknown gradient codec/);
});

test('int8 quanta are Math.round(x / scale), halves and the values just below them included', () => {
  // One block whose scale is exactly 1 (max 127), then values at, above and below k + 0.5.
  const x = new Float32Array(INT8_BLOCK);
  x[0] = 127;
  let i = 1;
  for (let k = -126; k < 126 && i < INT8_BLOCK; k += 3) {
    for (const v of [k + 0.5, Math.fround(k + 0.5 - 2 ** -20), Math.fround(k + 0.5 + 2 ** -20)]) if (i < INT8_BLOCK) x[i++] = v;
  }
  const payload = int8Codec.encode(x);
  assert.equal(payload.scales![0], 1);
  for (let j = 0; j < INT8_BLOCK; j++) assert.equal(payload.values[j], Math.round(x[j]), `x = ${x[j]}`);
  // A scale that is not a power of two: the quotient itself lands just below a half.
  const y = Float32Array.from({ length: 2 }, (_, j) => (j === 0 ? 127 * 3 : 0.49999999999999994 * 3));
  const s = Math.fround(y[0] / 127);
  assert.deepEqual([...int8Codec.encode(y).values], [127, Math.round(y[1] / s)]);
});

test('encode(values, lost) gives what expand will not give back, bit for bit, in every codec', () => {
  for (const codec of [fp32Codec, fp16Codec, int8Codec]) {
    const x = gradientLike(3 * INT8_BLOCK + 5, 7);
    x[11] = 1e6; // fp16 clamps it
    const lost = new Float32Array(x.length).fill(NaN);
    const payload = codec.encode(x, lost);
    const expanded = codec.expand(payload);
    for (let i = 0; i < x.length; i++) assert.ok(Object.is(lost[i], Math.fround(x[i] - expanded[i])), `${codec.name} element ${i}`);
    assert.throws(() => codec.encode(x, new Float32Array(1)), /room for 1 lost values/);
  }
});

test('addTo adds exactly what expand gives, for every codec', () => {
  for (const codec of [fp32Codec, fp16Codec, int8Codec]) {
    const payload = codec.encode(gradientLike(4 * INT8_BLOCK + 9, 11));
    const start = gradientLike(4 * INT8_BLOCK + 9, 12);
    const viaExpand = start.slice();
    const expanded = codec.expand(payload);
    for (let i = 0; i < viaExpand.length; i++) viaExpand[i] += expanded[i];
    const viaAddTo = start.slice();
    codec.addTo(payload, viaAddTo);
    assert.deepEqual(new Uint32Array(viaAddTo.buffer), new Uint32Array(viaExpand.buffer), codec.name);
  }
});
