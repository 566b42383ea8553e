import { ProtocolError } from './errors.js';
import { addFloat16, decodeFloat16, encodeFloat16, firstNonFiniteHalf, fromFloat16Bits } from './float16.js';
import { firstNonFinite } from './finite.js';
import { simdAddF16, simdAddF32, simdAddI8, simdAdvanceI8, simdAnyI8Min, simdEncodeF16, simdQuantizeI8 } from './simd/vector-kernels.js';

/** The codecs a run may name (`--codec`, welcome.run.codec). */
export const CODEC_NAMES = ['fp32', 'fp16', 'int8'] as const;
export type CodecName = (typeof CODEC_NAMES)[number];

/** The values a codec puts on the wire: raw floats, half bit patterns, or int8 quanta. */
export type CodecValues = Float32Array | Uint16Array | Int8Array;

/**
 * One encoded vector as it travels: `values` (a tail of the codec's dtype) and, for int8 only,
 * one float32 `scales` entry per block of INT8_BLOCK values.
 */
export interface EncodedVector {
  values: CodecValues;
  scales?: Float32Array;
}

/**
 * How a vector of float32s (a shard's gradient sum up, a weights delta down) is packed for the
 * wire. The run names one codec and every peer uses it. `decode` validates what it reads (a
 * payload off the wire may be hostile) and gets the element count because a payload alone
 * does not prove it. Decoding is a pure function of the payload, so a coordinator that
 * decodes what it encoded holds bit for bit what every worker decodes.
 */
export interface GradientCodec {
  readonly name: CodecName;
  /** Bytes on the wire for `length` values (tails padded to 4, as frames carry them). */
  wireBytes(length: number): number;
  /**
   * Packs `values`. With `lost`, also writes there what the packing loses, value by value:
   * lost[i] = values[i] - expand(payload)[i] in float32, the same bits as expanding and
   * subtracting, in the same pass (error feedback needs it every shard). `lost` may be `values`.
   */
  encode(values: Float32Array, lost?: Float32Array): EncodedVector;
  /** Checks a payload of unknown origin (refusing it with a ProtocolError), then expands it. */
  decode(payload: EncodedVector, length: number): Float32Array;
  /**
   * The float32 values of a payload already known to be sound: one that parseMessage has
   * validated (the schema checks every value and scale), or one this codec just encoded.
   * Skips decode's checks, which on the training hot path would scan every gradient twice.
   */
  expand(payload: EncodedVector): Float32Array;
  /**
   * target[i] += expand(payload)[i] for a sound payload (as for expand), bit for bit, without
   * materialising the expansion: how the coordinator sums gradients and everyone applies deltas.
   */
  addTo(payload: EncodedVector, target: Float32Array): void;
}

function checkLost(lost: Float32Array | undefined, length: number): void {
  if (lost && lost.length !== length) throw new Error(`encode: room for ${lost.length} lost values, ${length} values`);
}

/** Values per int8 scale: small enough that one outlier coarsens few values, large enough that scales cost 1.6%. */
export const INT8_BLOCK = 256;
/** int8 quanta are symmetric, -127..127: -128 never appears, so the bound is the same both ways. */
export const INT8_MAX = 127;

const pad4 = (bytes: number) => (bytes + 3) & ~3;

function badPayload(codec: CodecName, message: string): ProtocolError {
  return new ProtocolError('bad-gradient', `${codec} payload: ${message}`);
}

function expectValues<T extends CodecValues>(codec: CodecName, payload: EncodedVector, ctor: abstract new (...args: never[]) => T, dtype: string, length: number): T {
  const { values } = payload;
  if (!(values instanceof ctor)) throw badPayload(codec, `values must be ${dtype}, got ${values?.constructor?.name ?? typeof values}`);
  if (values.length !== length) throw badPayload(codec, `${values.length} elements; expected ${length}`);
  return values as T;
}

/** What is wrong with an encoded vector, and in which of its two fields. */
export interface PayloadProblem {
  field: 'values' | 'scales';
  message: string;
}

/**
 * Why an encoded vector of any codec (told by its dtype) is not sound on its own, or null: every
 * value it decodes to must be finite, and int8 needs exactly one usable scale per block while
 * the others carry none. The one check of payloads off the wire: the message schema and
 * `decode` both run it. Whether the codec is the run's, and the length the model's, is the
 * caller's to check.
 */
export function payloadProblem({ values, scales }: EncodedVector): PayloadProblem | null {
  if (scales !== undefined && !(scales instanceof Float32Array)) return { field: 'scales', message: 'scales must be f32' };
  if (values instanceof Int8Array) {
    // The SIMD scan proves a clean payload; indexOf (the engine's own scan, several times
    // faster than a loop here) finds where a dirty one goes wrong, or runs without SIMD.
    const i = simdAnyI8Min(values) === false ? -1 : values.indexOf(-INT8_MAX - 1);
    if (i >= 0) return { field: 'values', message: `int8 element ${i} is ${values[i]}; quanta are -127..127` };
    if (!scales) return { field: 'scales', message: 'int8 values need scales' };
    const blocks = int8BlockCount(values.length);
    if (scales.length !== blocks) return { field: 'scales', message: `${scales.length} scales for ${values.length} int8 values; expected ${blocks}` };
    // Inline and branch-light: a call per scale boxed each one into a heap number, 35 KB of
    // garbage per resnet20v2 gradient that the engine allocated straight into the old generation.
    for (let b = 0; b < blocks; b++) {
      const scale = scales[b];
      if (scale >= 0 && Math.fround(scale * INT8_MAX) < Infinity) continue;
      return { field: 'scales', message: `scale ${b} ${int8ScaleProblem(scale)}` };
    }
    return null;
  }
  if (values instanceof Float32Array) {
    const i = firstNonFinite(values);
    if (i >= 0) return { field: 'values', message: `element ${i} of ${values.length} is ${values[i]}` };
  } else if (values instanceof Uint16Array) {
    const i = firstNonFiniteHalf(values);
    if (i >= 0) return { field: 'values', message: `fp16 element ${i} of ${values.length} is ${values[i] & 0x3ff ? 'NaN' : 'infinite'}` };
  } else {
    return { field: 'values', message: `values must be f32, u16 or i8, got ${(values as unknown as object)?.constructor?.name ?? typeof values}` };
  }
  return scales ? { field: 'scales', message: `only int8 values carry scales, not ${values instanceof Float32Array ? 'fp32' : 'fp16'}` } : null;
}

function expectSound(codec: CodecName, payload: EncodedVector): void {
  const problem = payloadProblem(payload);
  if (problem) throw badPayload(codec, problem.message);
}

/** Raw float32: encode and decode hand back the same array, so a gradient is never copied. */
export const fp32Codec: GradientCodec = {
  name: 'fp32',
  wireBytes: (length) => 4 * length,
  encode(values, lost) {
    checkLost(lost, values.length);
    lost?.fill(0);
    return { values };
  },
  decode(payload, length) {
    const values = expectValues('fp32', payload, Float32Array, 'f32', length);
    expectSound('fp32', payload);
    return values;
  },
  expand: (payload) => payload.values as Float32Array,
  addTo(payload, target) {
    const values = payload.values as Float32Array;
    if (simdAddF32(values, target)) return;
    for (let i = 0; i < target.length; i++) target[i] += values[i];
  },
};

/** IEEE half precision, rounded to nearest even; values beyond +-65504 clamp to it. */
export const fp16Codec: GradientCodec = {
  name: 'fp16',
  wireBytes: (length) => pad4(2 * length),
  encode(values, lost) {
    checkLost(lost, values.length);
    const bits = new Uint16Array(values.length);
    if (simdEncodeF16(values, bits, lost ?? null)) return { values: bits };
    encodeFloat16(values, bits);
    if (lost) {
      for (let i = 0; i < values.length; i++) lost[i] = values[i] - fromFloat16Bits(bits[i]);
    }
    return { values: bits };
  },
  decode(payload, length) {
    const bits = expectValues('fp16', payload, Uint16Array, 'u16', length);
    expectSound('fp16', payload);
    return decodeFloat16(bits);
  },
  expand: (payload) => decodeFloat16(payload.values as Uint16Array),
  addTo(payload, target) {
    if (!simdAddF16(payload.values as Uint16Array, target)) addFloat16(payload.values as Uint16Array, target);
  },
};

/** How many int8 scales a vector of `length` values has. */
export function int8BlockCount(length: number): number {
  return Math.ceil(length / INT8_BLOCK);
}

/**
 * Why an int8 scale cannot be used, or null. The decoded values are q x scale with |q| <= 127,
 * so a finite, non-negative scale whose 127-fold is a finite float32 keeps every value finite.
 */
export function int8ScaleProblem(scale: number): string | null {
  if (!Number.isFinite(scale)) return `is ${scale}`;
  if (scale < 0) return `is negative (${scale})`;
  if (!Number.isFinite(Math.fround(scale * INT8_MAX))) return `is ${scale}, whose values would overflow float32`;
  return null;
}

/**
 * Symmetric int8 per block of INT8_BLOCK values: scale = max|x| / 127 (as float32), q =
 * round(x / scale), value = float32(q x scale). The error is at most scale / 2 = max|x| / 254
 * per block.
 */
export const int8Codec: GradientCodec = {
  name: 'int8',
  wireBytes: (length) => pad4(length) + 4 * int8BlockCount(length),
  encode(values, lost) {
    checkLost(lost, values.length);
    return encodeInt8(values, lost ?? null);
  },
  decode(payload, length) {
    const q = expectValues('int8', payload, Int8Array, 'i8', length);
    expectSound('int8', payload);
    return expandInt8(q, payload.scales!);
  },
  expand: (payload) => expandInt8(payload.values as Int8Array, payload.scales!),
  addTo(payload, target) {
    const q = payload.values as Int8Array;
    const scales = payload.scales!;
    if (simdAddI8(q, scales, target)) return;
    for (let b = 0; b < scales.length; b++) {
      const scale = scales[b];
      const end = Math.min(target.length, (b + 1) * INT8_BLOCK);
      // fround: the float32 product expand stores; the sum is then rounded once, as there
      // (spelled out: with `+=` the JIT keeps the sum in double before the store, 1.7x slower).
      for (let i = b * INT8_BLOCK; i < end; i++) target[i] = Math.fround(target[i] + Math.fround(q[i] * scale));
    }
  },
};

/**
 * The int8 encoding (see int8Codec), block by block. Plain top-level loops over typed arrays,
 * so the JIT keeps them optimised (inside the codec object literal it kept deoptimising, 4x
 * slower).
 */
function encodeInt8(values: Float32Array, lost: Float32Array | null): EncodedVector {
  const n = values.length;
  const q = new Int8Array(n);
  const scales = new Float32Array(int8BlockCount(n));
  if (simdQuantizeI8(values, q, scales, lost)) {
    // The kernel quantised every ordinary block; the rare others (see simdQuantizeI8) are finished here.
    for (let b = 0; b < scales.length; b++) {
      if (!ordinaryScale(scales[b])) encodeInt8Block(values, q, scales, lost, b);
    }
  } else {
    for (let b = 0; b < scales.length; b++) encodeInt8Block(values, q, scales, lost, b);
  }
  return { values: q, scales };
}

/**
 * The int8 advance of public weights `pub` toward `master` (PublicWeights.advance) in one SIMD
 * pass: the payload that encodes float32(master - pub), already added to `pub`, with the bits
 * of subtracting, encode and addTo. `difference` is room for the blocks JavaScript finishes.
 * Null, with nothing done, where the kernels cannot run.
 */
export function advanceInt8(master: Float32Array, pub: Float32Array, difference: Float32Array): EncodedVector | null {
  const n = pub.length;
  const q = new Int8Array(n);
  const scales = new Float32Array(int8BlockCount(n));
  if (!simdAdvanceI8(master, pub, q, scales)) return null;
  // The blocks the kernel left (the rare ones, and a shorter last one): subtract, encode and
  // add as the three-pass path does, block by block.
  const wholeBlocks = Math.floor(n / INT8_BLOCK);
  for (let b = 0; b < scales.length; b++) {
    if (ordinaryScale(scales[b])) continue;
    const start = b * INT8_BLOCK;
    const end = Math.min(n, start + INT8_BLOCK);
    if (scales[b] === 0 && b < wholeBlocks) {
      // Nothing moved here (or too little for a scale): the quanta stay zero, and adding their
      // zeros turns a -0 into +0, as addTo does.
      for (let i = start; i < end; i++) pub[i] += 0;
      continue;
    }
    for (let i = start; i < end; i++) difference[i] = master[i] - pub[i];
    encodeInt8Block(difference, q, scales, null, b);
    const scale = scales[b];
    for (let i = start; i < end; i++) pub[i] = Math.fround(pub[i] + Math.fround(q[i] * scale));
  }
  return { values: q, scales };
}

/** A scale the quantizer divides by: positive, finite, and finite 127-fold. */
function ordinaryScale(scale: number): boolean {
  return scale > 0 && scale !== Infinity && Math.fround(scale * INT8_MAX) !== Infinity;
}

/** Block `b` of the int8 encoding into `q` (zeros there already), `scales` and `lost`. */
function encodeInt8Block(values: Float32Array, q: Int8Array, scales: Float32Array, lost: Float32Array | null, b: number): void {
  const start = b * INT8_BLOCK;
  const end = Math.min(values.length, start + INT8_BLOCK);
  const scale = int8Scale(values, start, end);
  scales[b] = scale;
  // A zero block, or one so small its scale underflows, stays all zeros (error feedback keeps
  // it); a NaN or infinite scale is refused by the receiver, as the fp32 gradient would be.
  const quantized = scale > 0 && scale !== Infinity;
  if (quantized && lost) quantizeInt8Lost(values, q, lost, start, end, scale);
  else if (quantized) quantizeInt8(values, q, start, end, scale);
  else if (lost) int8Lost(values, q, lost, start, end, scale);
}

/** max|x| / 127 over [start, end) as float32; NaN if a value is NaN, infinite if one is. */
function int8Scale(values: Float32Array, start: number, end: number): number {
  let max = 0;
  // x * 0 is +-0 for finite x and NaN otherwise: one branch-free test for the whole block.
  let poison = 0;
  for (let i = start; i < end; i++) {
    const a = Math.abs(values[i]);
    if (a > max) max = a;
    poison += a * 0;
  }
  if (poison !== 0 && hasNaN(values, start, end)) return NaN;
  const scale = Math.fround(max / INT8_MAX);
  // Near the float32 maximum, rounding the scale up would make 127 x scale overflow: one step
  // down keeps every decoded value finite (the quantizer's clamp absorbs the difference).
  if (Number.isFinite(scale) && !Number.isFinite(Math.fround(scale * INT8_MAX))) return Math.fround(scale * (1 - 2 ** -23));
  return scale;
}

/**
 * round(x) as Math.round rounds (half up), clamped to -127..127. Math.round itself is a branch
 * that random fractions mispredict half the time (4x slower here). floor(x + 0.5) is the same
 * but where x + 0.5 rounds up to an integer: then x is below r - 0.5 (exact for these
 * magnitudes), a branch that is almost never taken.
 */
function quantum(x: number): number {
  let r = Math.floor(x + 0.5);
  if (x < r - 0.5) r -= 1;
  return r > INT8_MAX ? INT8_MAX : r < -INT8_MAX ? -INT8_MAX : r;
}

function quantizeInt8(values: Float32Array, q: Int8Array, start: number, end: number, scale: number): void {
  for (let i = start; i < end; i++) q[i] = quantum(values[i] / scale);
}

/** quantizeInt8 and int8Lost in one pass (error feedback's hot path). */
function quantizeInt8Lost(values: Float32Array, q: Int8Array, lost: Float32Array, start: number, end: number, scale: number): void {
  for (let i = start; i < end; i++) {
    const v = values[i];
    const c = quantum(v / scale);
    q[i] = c;
    lost[i] = v - Math.fround(c * scale);
  }
}

/** lost = values - float32(q x scale): what expand will not give back. */
function int8Lost(values: Float32Array, q: Int8Array, lost: Float32Array, start: number, end: number, scale: number): void {
  for (let i = start; i < end; i++) lost[i] = values[i] - Math.fround(q[i] * scale);
}

function hasNaN(values: Float32Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (values[i] !== values[i]) return true;
  return false;
}

/** value = float32(q x scale), block by block. */
function expandInt8(q: Int8Array, scales: Float32Array): Float32Array {
  const out = new Float32Array(q.length);
  for (let b = 0; b < scales.length; b++) {
    const scale = scales[b];
    const end = Math.min(q.length, (b + 1) * INT8_BLOCK);
    for (let i = b * INT8_BLOCK; i < end; i++) out[i] = q[i] * scale;
  }
  return out;
}

const CODECS: ReadonlyMap<string, GradientCodec> = new Map([fp32Codec, fp16Codec, int8Codec].map((c) => [c.name, c]));

export const GRADIENT_CODEC_NAMES: readonly CodecName[] = CODEC_NAMES;

export function isCodecName(name: unknown): name is CodecName {
  return typeof name === 'string' && CODECS.has(name);
}

/** The codec a run names. Unknown names throw rather than fall back: mixed codecs corrupt sums. */
export function getGradientCodec(name: string): GradientCodec {
  const codec = CODECS.get(name);
  if (!codec) {
    throw new ProtocolError('malformed', `unknown gradient codec ${JSON.stringify(name)}; this build knows ${GRADIENT_CODEC_NAMES.join(', ')}`);
  }
  return codec;
}

/** The codec whose wire dtype `values` has, so a receiver can say which codec a peer used. */
export function codecOfValues(values: unknown): CodecName | null {
  if (values instanceof Float32Array) return 'fp32';
  if (values instanceof Uint16Array) return 'fp16';
  if (values instanceof Int8Array) return 'int8';
  return null;
}
