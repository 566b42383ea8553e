// The codecs' vector loops in WebAssembly SIMD (AssemblyScript, compiled by
// scripts/build-wasm.mjs into src/simd/module.generated.ts).
//
// Every argument named like an array is a byte offset into this module's own memory, where
// src/simd/vector-kernels.ts copies the operands and reads the results back. The module has no
// data segments, globals or allocator. Each kernel gives the same bits as the plain JavaScript
// loop it stands in for (src/vectors.ts): float32 addition, subtraction and multiplication are
// correctly rounded in both, and the int8 quotient is taken in float64 as JavaScript takes it.

const INT8_BLOCK: i32 = 256;
const INT8_MAX: f64 = 127;

@inline function at(p: usize, i: i32): usize {
  return p + (<usize>i << 2);
}

/** dst[i] += src[i] (float32). */
export function addF32(src: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(at(dst, i), f32x4.add(v128.load(at(dst, i)), v128.load(at(src, i))));
  for (; i < n; i++) store<f32>(at(dst, i), load<f32>(at(dst, i)) + load<f32>(at(src, i)));
}

/** out[i] = a[i] - b[i] (float32); out may be a or b. */
export function subF32(a: usize, b: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(at(out, i), f32x4.sub(v128.load(at(a, i)), v128.load(at(b, i))));
  for (; i < n; i++) store<f32>(at(out, i), load<f32>(at(a, i)) - load<f32>(at(b, i)));
}

/** 1 if any of src[0..n) is NaN or infinite, else 0: x * 0 is 0 for finite x and NaN otherwise. n a multiple of 4. */
export function anyNonFiniteF32(src: usize, n: i32): i32 {
  let acc = f32x4.splat(0);
  for (let i = 0; i < n; i += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(at(src, i)), f32x4.splat(0)));
  return i32(v128.any_true(f32x4.ne(acc, acc)));
}

/** dst[i] += float32(q[i] x scales[i / 256]). */
export function addI8(q: usize, scales: usize, dst: usize, n: i32): void {
  const blocks = (n + INT8_BLOCK - 1) / INT8_BLOCK;
  for (let b = 0; b < blocks; b++) {
    const s = load<f32>(at(scales, b));
    const sv = f32x4.splat(s);
    const start = b * INT8_BLOCK;
    const end = min(n, start + INT8_BLOCK);
    let i = start;
    for (; i + 16 <= end; i += 16) {
      const bytes = v128.load(q + <usize>i);
      const lo = i16x8.extend_low_i8x16_s(bytes);
      const hi = i16x8.extend_high_i8x16_s(bytes);
      const p = at(dst, i);
      v128.store(p, f32x4.add(v128.load(p), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)), sv)));
      v128.store(p + 16, f32x4.add(v128.load(p + 16), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)), sv)));
      v128.store(p + 32, f32x4.add(v128.load(p + 32), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), sv)));
      v128.store(p + 48, f32x4.add(v128.load(p + 48), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)), sv)));
    }
    for (; i < end; i++) store<f32>(at(dst, i), load<f32>(at(dst, i)) + <f32>load<i8>(q + <usize>i) * s);
  }
}

/**
 * round(x) half up, clamped to -127..127, for two float64 quotients: floor(x + 0.5), less one
 * where x + 0.5 rounded up to an integer (x < r - 0.5), as the JavaScript quantum() does.
 */
@inline function quanta(x: v128): v128 {
  const r = f64x2.floor(f64x2.add(x, f64x2.splat(0.5)));
  const fixed = v128.bitselect(f64x2.sub(r, f64x2.splat(1)), r, f64x2.lt(x, f64x2.sub(r, f64x2.splat(0.5))));
  // pmin/pmax are single instructions, where min/max must order NaNs and zeros; the quotients
  // of an ordinary block are finite.
  return f64x2.pmax(f64x2.splat(-INT8_MAX), f64x2.pmin(f64x2.splat(INT8_MAX), fixed));
}

/**
 * 2^52 + 2^51: added to an integer-valued float64 of magnitude under 2^51, it leaves that
 * integer, in two's complement, in the low 32 bits of the sum (cheaper than a saturating
 * conversion, which these quanta of at most 127 do not need).
 */
const INTEGER_BIAS: f64 = 6755399441055744.0;

/**
 * Symmetric int8 per block of 256 (see int8Codec), for n a whole number of blocks (the caller
 * finishes a shorter last block), of x = values, or with `minus` non-zero of x = values - minus
 * (float32): scales[b] = float32(max|x| / 127); for each block whose scale is positive, finite
 * and whose 127-fold is finite, q = round(x / scale), with `lost` non-zero lost = x - float32(q x
 * scale), and with `minus` non-zero minus += float32(q x scale), as addI8 adds (the public
 * weights' advance in one pass, see PublicWeights). Other blocks (a NaN, an infinity, all zeros,
 * a scale that underflows or nears the float32 maximum) get only their scale here, their quanta
 * zeroed, `minus` left as it was and their values copied into `lost`: the caller finishes them
 * with the JavaScript loop, which the rare cases it takes are not worth duplicating for.
 */
export function quantizeI8(values: usize, minus: usize, q: usize, scales: usize, lost: usize, n: i32): void {
  const blocks = (n + INT8_BLOCK - 1) / INT8_BLOCK;
  for (let b = 0; b < blocks; b++) {
    const start = b * INT8_BLOCK;
    const end = min(n, start + INT8_BLOCK);
    // pmax skips NaNs (f32x4.max would keep them, at three times the cost): they are looked
    // for beside it, and a NaN anywhere makes the block's scale NaN, as in JavaScript.
    let mv = f32x4.splat(0);
    let nan = i32x4.splat(0);
    let i = start;
    for (; i + 4 <= end; i += 4) {
      const v = difference(values, minus, i);
      mv = f32x4.pmax(mv, f32x4.abs(v));
      nan = v128.or(nan, f32x4.ne(v, v));
    }
    let top = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
    if (v128.any_true(nan)) top = NaN;
    const scale = <f32>(<f64>top / INT8_MAX);
    store<f32>(at(scales, b), scale);
    if (!(scale > 0 && scale < Infinity && <f32>(<f64>scale * INT8_MAX) < Infinity)) {
      memory.fill(q + <usize>start, 0, <usize>(end - start));
      // The values themselves, so that a caller whose `lost` is its `values` still has them.
      if (lost) memory.copy(at(lost, start), at(values, start), <usize>(end - start) << 2);
      continue;
    }
    const sd = f64x2.splat(<f64>scale);
    const sf = f32x4.splat(scale);
    i = start;
    for (; i + 4 <= end; i += 4) {
      const v = difference(values, minus, i);
      const lo = quanta(f64x2.div(f64x2.promote_low_f32x4(v), sd));
      const hi = quanta(f64x2.div(f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1)), sd));
      const bias = f64x2.splat(INTEGER_BIAS);
      const qi = v128.shuffle<i32>(f64x2.add(lo, bias), f64x2.add(hi, bias), 0, 2, 4, 6);
      store<i32>(q + <usize>i, i32x4.extract_lane(i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(qi, qi), i16x8.splat(0)), 0));
      const step = f32x4.mul(f32x4.convert_i32x4_s(qi), sf);
      if (lost) v128.store(at(lost, i), f32x4.sub(v, step));
      if (minus) v128.store(at(minus, i), f32x4.add(v128.load(at(minus, i)), step));
    }
  }
}

/** Four values at i, less `minus`'s where it is non-zero. */
@inline function difference(values: usize, minus: usize, i: i32): v128 {
  const v = v128.load(at(values, i));
  return minus ? f32x4.sub(v, v128.load(at(minus, i))) : v;
}

/**
 * The float32 values of eight halves (IEEE binary16 bits, zero-extended in two i32x4): a
 * normal half rebiased (exponent 15 -> 127), a subnormal one as mantissa x 2^-24, an infinity
 * or NaN as the float32 one with the same mantissa, each with its sign; the values the
 * JavaScript decode table holds.
 */
@inline function halvesToFloats(h: v128): v128 {
  const sign = i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16);
  const exponent = v128.and(h, i32x4.splat(0x7c00));
  const magnitude = v128.and(h, i32x4.splat(0x7fff));
  const normal = i32x4.add(i32x4.shl(magnitude, 13), i32x4.splat(0x38000000));
  const special = v128.or(i32x4.splat(0x7f800000), i32x4.shl(v128.and(h, i32x4.splat(0x3ff)), 13));
  const subnormal = f32x4.mul(f32x4.convert_i32x4_s(magnitude), f32x4.splat(5.9604644775390625e-8));
  const isSubnormal = i32x4.eq(exponent, i32x4.splat(0));
  const isSpecial = i32x4.eq(exponent, i32x4.splat(0x7c00));
  return v128.or(sign, v128.bitselect(subnormal, v128.bitselect(special, normal, isSpecial), isSubnormal));
}

@inline function halfToFloat(h: i32): f32 {
  const sign = (h & 0x8000) << 16;
  const exponent = h & 0x7c00;
  const magnitude = h & 0x7fff;
  let bits: i32;
  if (exponent == 0) bits = reinterpret<i32>(<f32>magnitude * 5.9604644775390625e-8);
  else if (exponent == 0x7c00) bits = 0x7f800000 | ((h & 0x3ff) << 13);
  else bits = (magnitude << 13) + 0x38000000;
  return reinterpret<f32>(sign | bits);
}

/** dst[i] += the float32 value of the half bits[i]. */
export function addF16(bits: usize, dst: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const h = v128.load(bits + (<usize>i << 1));
    const p = at(dst, i);
    v128.store(p, f32x4.add(v128.load(p), halvesToFloats(i32x4.extend_low_i16x8_u(h))));
    v128.store(p + 16, f32x4.add(v128.load(p + 16), halvesToFloats(i32x4.extend_high_i16x8_u(h))));
  }
  for (; i < n; i++) store<f32>(at(dst, i), load<f32>(at(dst, i)) + halfToFloat(<i32>load<u16>(bits + (<usize>i << 1))));
}

/** 1 if any half in bits[0..n) is infinite or NaN (exponent all ones), else 0. n a multiple of 8. */
export function anyNonFiniteF16(bits: usize, n: i32): i32 {
  const mask = i16x8.splat(0x7c00);
  let hit = i16x8.splat(0);
  for (let i = 0; i < n; i += 8) hit = v128.or(hit, i16x8.eq(v128.and(v128.load(bits + (<usize>i << 1)), mask), mask));
  return i32(v128.any_true(hit));
}

/** 1 if any int8 in q[0..n) is -128 (quanta are -127..127), else 0; n a multiple of 16. */
export function anyI8Min(q: usize, n: i32): i32 {
  let hit = i8x16.splat(0);
  for (let i = 0; i < n; i += 16) hit = v128.or(hit, i8x16.eq(v128.load(q + <usize>i), i8x16.splat(-128)));
  return i32(v128.any_true(hit));
}

/**
 * Four float32s to halves (in the low 16 bits of each lane), rounding to nearest even, as the
 * JavaScript halfOf: NaN and infinity stay so, finite values beyond the half range clamp to
 * +-65504, normal halves round the 13 dropped bits, subnormal ones round |x| x 2^24 (exact in
 * float32) to an integer.
 */
@inline function floatsToHalves(v: v128): v128 {
  const bits = v;
  const sign = v128.and(i32x4.shr_u(bits, 16), i32x4.splat(0x8000));
  const abs = v128.and(bits, i32x4.splat(0x7fffffff));
  const nonFinite = v128.bitselect(i32x4.splat(0x7e00), i32x4.splat(0x7c00), i32x4.gt_s(abs, i32x4.splat(0x7f800000)));
  const normal = i32x4.shr_u(
    i32x4.add(i32x4.sub(abs, i32x4.splat(0x38000000 - 0x0fff)), v128.and(i32x4.shr_u(abs, 13), i32x4.splat(1))),
    13,
  );
  const subnormal = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(abs, f32x4.splat(16777216))));
  let h = v128.bitselect(normal, subnormal, i32x4.ge_s(abs, i32x4.splat(0x38800000)));
  h = v128.bitselect(i32x4.splat(0x7bff), h, i32x4.ge_s(abs, i32x4.splat(0x477ff000)));
  h = v128.bitselect(nonFinite, h, i32x4.ge_s(abs, i32x4.splat(0x7f800000)));
  return v128.or(sign, h);
}

@inline function floatToHalf(x: f32): i32 {
  const bits = reinterpret<i32>(x);
  const sign = (bits >>> 16) & 0x8000;
  const abs = bits & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | (abs > 0x7f800000 ? 0x7e00 : 0x7c00);
  if (abs >= 0x477ff000) return sign | 0x7bff;
  if (abs >= 0x38800000) return sign | ((abs - 0x38000000 + 0x0fff + ((abs >>> 13) & 1)) >>> 13);
  return sign | <i32>nearest(reinterpret<f32>(abs) * 16777216);
}

/**
 * out[i] = the half of values[i] (see floatsToHalves) and, with `lost` non-zero, lost[i] =
 * values[i] - its value (`lost` may be `values`).
 */
export function encodeF16(values: usize, out: usize, lost: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const a = v128.load(at(values, i));
    const b = v128.load(at(values, i + 4));
    const ha = floatsToHalves(a);
    const hb = floatsToHalves(b);
    v128.store(out + (<usize>i << 1), i16x8.narrow_i32x4_u(ha, hb));
    if (lost) {
      v128.store(at(lost, i), f32x4.sub(a, halvesToFloats(ha)));
      v128.store(at(lost, i + 4), f32x4.sub(b, halvesToFloats(hb)));
    }
  }
  for (; i < n; i++) {
    const x = load<f32>(at(values, i));
    const h = floatToHalf(x);
    store<u16>(out + (<usize>i << 1), <u16>h);
    if (lost) store<f32>(at(lost, i), x - halfToFloat(h));
  }
}
