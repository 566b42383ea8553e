/**
 * IEEE 754 half precision, as raw 16-bit patterns: what the fp16 codec puts on the wire.
 * Conversion is by bit manipulation rather than Float16Array or Math.f16round, which not every
 * runtime Chorus targets has (Node 20, older browsers), so every peer rounds identically.
 */
import { simdAnyNonFiniteHalf } from './simd/vector-kernels.js';

/** Largest finite half: 65504. */
export const FLOAT16_MAX = 65504;
/** Bits of +-65504, what an out-of-range finite value is clamped to (the worker's error feedback keeps the excess). */
const MAX_BITS = 0x7bff;
/** Exponent bits all ones: infinity or NaN. */
export const FLOAT16_EXPONENT_MASK = 0x7c00;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * One float32 to half bits, rounding to nearest, ties to even. Finite values beyond the half
 * range clamp to +-65504 (never infinity); NaN and infinity stay NaN and infinity, so a
 * non-finite gradient is refused by the receiver exactly as it is in fp32.
 */
export function toFloat16Bits(value: number): number {
  f32[0] = value;
  return halfOf(u32[0], f32[0]);
}

/** `value` (a float32) to half bits, given its float32 bit pattern `bits`. */
function halfOf(bits: number, value: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const abs = bits & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | (abs > 0x7f800000 ? 0x7e00 : 0x7c00);
  // 65520 (0x477ff000) and above round to infinity in IEEE arithmetic.
  if (abs >= 0x477ff000) return sign | MAX_BITS;
  if (abs >= 0x38800000) {
    // Normal half: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to
    // nearest even; a carry out of the mantissa correctly bumps the exponent.
    return sign | ((abs - 0x38000000 + 0x0fff + ((abs >>> 13) & 1)) >>> 13);
  }
  // Subnormal half (or zero): a multiple of 2^-24, exact in double arithmetic.
  const scaled = value * (sign ? -16777216 : 16777216);
  let q = Math.floor(scaled);
  const rest = scaled - q;
  if (rest > 0.5 || (rest === 0.5 && (q & 1) === 1)) q++;
  return sign | q;
}

/** Every half pattern's float32 value: decoding is one lookup per element. */
const DECODE_TABLE: Float32Array = (() => {
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const exponent = (h >>> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    let value: number;
    if (exponent === 0) value = mantissa * 2 ** -24;
    else if (exponent === 31) value = mantissa ? NaN : Infinity;
    else value = (1 + mantissa / 1024) * 2 ** (exponent - 15);
    table[h] = h & 0x8000 ? -value : value;
  }
  return table;
})();

export function fromFloat16Bits(bits: number): number {
  return DECODE_TABLE[bits & 0xffff];
}

/** Fills `out` with the halves of `values`, element by element. */
export function encodeFloat16(values: Float32Array, out: Uint16Array = new Uint16Array(values.length)): Uint16Array {
  // A Float32Array is always 4-byte aligned, so its bits can be read in place.
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) out[i] = halfOf(bits[i], values[i]);
  return out;
}

/** The float32 values of half bit patterns (the caller has refused infinities and NaNs, see firstNonFiniteHalf). */
export function decodeFloat16(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  const table = DECODE_TABLE;
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}

/** The index of the first half that is infinite or NaN, or -1. */
export function firstNonFiniteHalf(bits: Uint16Array): number {
  if (simdAnyNonFiniteHalf(bits) === false) return -1;
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & FLOAT16_EXPONENT_MASK) === FLOAT16_EXPONENT_MASK) return i;
  }
  return -1;
}

/** target[i] += the float32 value of bits[i] (sound halves only, as for decodeFloat16). */
export function addFloat16(bits: Uint16Array, target: Float32Array): void {
  const table = DECODE_TABLE;
  for (let i = 0; i < target.length; i++) target[i] += table[bits[i]];
}
