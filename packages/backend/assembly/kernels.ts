// Chorus' WebAssembly SIMD training kernels (AssemblyScript, compiled by scripts/build-wasm.mjs).
//
// The module imports tfjs-backend-wasm's own memory and works in place on tensors there: every
// argument named like a tensor is a byte offset into that heap, allocated by the caller. It has
// no data segments, no globals and no allocator, so it never writes anywhere it was not given.
// All loops run in a fixed order, so results are bit-identical from run to run.
//
// Layouts: activations are NHWC, seen as [groups, rows, c] (a BatchNorm group is `rows`
// consecutive pixels of whole examples); per-channel vectors are [c]. The vector loops handle
// four channels at a time; channels past the last multiple of four run through scalar tails.

const CHUNK: i32 = 64;

@inline function f32At(p: usize, i: i32): f32 {
  return load<f32>(p + (<usize>i << 2));
}
@inline function setF32(p: usize, i: i32, v: f32): void {
  store<f32>(p + (<usize>i << 2), v);
}
@inline function f64At(p: usize, i: i32): f64 {
  return load<f64>(p + (<usize>i << 3));
}
@inline function setF64(p: usize, i: i32, v: f64): void {
  store<f64>(p + (<usize>i << 3), v);
}

/** dst[0..n) = 0 (f32 or f64 words counted as 4-byte units). */
function zero(p: usize, words: i32): void {
  memory.fill(p, 0, <usize>words << 2);
}

/**
 * Adds the f32 chunk sums `part[0..c)` into the f64 totals `total[0..c)` and clears `part`.
 * Chunks of CHUNK rows are summed in f32 and the chunks in f64: accurate over 32768 rows
 * without paying for f64 arithmetic per element.
 */
function flush(part: usize, total: usize, c: i32): void {
  for (let k = 0; k < c; k++) {
    setF64(total, k, f64At(total, k) + <f64>f32At(part, k));
  }
  zero(part, c);
}

/**
 * BatchNorm (batch statistics, biased variance) with an optional ReLU, forward.
 *   x, out: [groups, rows, c];  mean, variance: [groups, c] (outputs);  gamma, beta: [c]
 *   scratch: at least 48 * c bytes, 8-byte aligned.
 * Moments are taken around the group's first row (shifted data: no cancellation when the
 * mean is large against the spread), then out = x * scale + shift with
 * scale = gamma / sqrt(var + eps) and shift = beta - mean * scale.
 */
export function bnForward(
  x: usize, out: usize, mean: usize, variance: usize, gamma: usize, beta: usize,
  groups: i32, rows: i32, c: i32, eps: f64, relu: i32, scratch: usize,
): void {
  const s1 = scratch;                           // f64 [c]
  const s2 = s1 + (<usize>c << 3);              // f64 [c]
  const p1 = s2 + (<usize>c << 3);              // f32 [c]
  const p2 = p1 + (<usize>c << 2);              // f32 [c]
  const scale = p2 + (<usize>c << 2);           // f32 [c]
  const shift = scale + (<usize>c << 2);        // f32 [c]
  const c4 = c & ~3;
  const rowBytes = <usize>c << 2;
  const zeroV = f32x4.splat(0);
  for (let g = 0; g < groups; g++) {
    const xg = x + <usize>g * <usize>rows * rowBytes;
    const og = out + <usize>g * <usize>rows * rowBytes;
    zero(s1, 4 * c);
    zero(p1, 2 * c);
    // Moments of x - x0 (x0: the group's first row).
    for (let r0 = 0; r0 < rows; r0 += CHUNK) {
      const r1 = min(rows, r0 + CHUNK);
      for (let r = r0; r < r1; r++) {
        const xr = xg + <usize>r * rowBytes;
        let k = 0;
        for (; k < c4; k += 4) {
          const o = <usize>k << 2;
          const d = f32x4.sub(v128.load(xr + o), v128.load(xg + o));
          v128.store(p1 + o, f32x4.add(v128.load(p1 + o), d));
          v128.store(p2 + o, f32x4.add(v128.load(p2 + o), f32x4.mul(d, d)));
        }
        for (; k < c; k++) {
          const d = f32At(xr, k) - f32At(xg, k);
          setF32(p1, k, f32At(p1, k) + d);
          setF32(p2, k, f32At(p2, k) + d * d);
        }
      }
      flush(p1, s1, c);
      flush(p2, s2, c);
    }
    for (let k = 0; k < c; k++) {
      const m1 = f64At(s1, k) / <f64>rows;
      const m = <f64>f32At(xg, k) + m1;
      const v = max(0.0, f64At(s2, k) / <f64>rows - m1 * m1);
      const mf = <f32>m;
      const vf = <f32>v;
      setF32(mean + (<usize>g * <usize>c << 2), k, mf);
      setF32(variance + (<usize>g * <usize>c << 2), k, vf);
      const inv = <f32>(1.0 / Math.sqrt(<f64>vf + eps));
      const sc = f32At(gamma, k) * inv;
      setF32(scale, k, sc);
      setF32(shift, k, f32At(beta, k) - mf * sc);
    }
    // out = x * scale + shift (then ReLU).
    for (let r = 0; r < rows; r++) {
      const xr = xg + <usize>r * rowBytes;
      const orow = og + <usize>r * rowBytes;
      let k = 0;
      if (relu != 0) {
        for (; k < c4; k += 4) {
          const o = <usize>k << 2;
          const y = f32x4.add(f32x4.mul(v128.load(xr + o), v128.load(scale + o)), v128.load(shift + o));
          v128.store(orow + o, f32x4.max(y, zeroV));
        }
        for (; k < c; k++) {
          const y = f32At(xr, k) * f32At(scale, k) + f32At(shift, k);
          setF32(orow, k, y > 0 ? y : 0);
        }
      } else {
        for (; k < c4; k += 4) {
          const o = <usize>k << 2;
          v128.store(orow + o, f32x4.add(f32x4.mul(v128.load(xr + o), v128.load(scale + o)), v128.load(shift + o)));
        }
        for (; k < c; k++) setF32(orow, k, f32At(xr, k) * f32At(scale, k) + f32At(shift, k));
      }
    }
  }
}

/**
 * Gradient of bnForward (training mode: the batch moments depend on x).
 *   x, out, dy, dx: [groups, rows, c];  mean, variance: [groups, c] (bnForward's);  gamma: [c]
 *   dgamma, dbeta: [c] (outputs, summed over groups);  scratch: at least 72 * c bytes.
 * With dyr = dy masked by out > 0 (ReLU), n = rows, inv = 1 / sqrt(var + eps),
 * S1 = sum dyr and S2 = sum dyr * (x - mean) over the group:
 *   dx = gamma * inv * (dyr - S1 / n - (x - mean) * inv^2 * S2 / n)
 *   dbeta += S1, dgamma += S2 * inv.
 */
export function bnBackward(
  x: usize, out: usize, dy: usize, mean: usize, variance: usize, gamma: usize,
  dx: usize, dgamma: usize, dbeta: usize,
  groups: i32, rows: i32, c: i32, eps: f64, relu: i32, scratch: usize,
): void {
  const s1 = scratch;                           // f64 [c]
  const s2 = s1 + (<usize>c << 3);              // f64 [c]
  const tg = s2 + (<usize>c << 3);              // f64 [c]: dgamma total
  const tb = tg + (<usize>c << 3);              // f64 [c]: dbeta total
  const p1 = tb + (<usize>c << 3);              // f32 [c]
  const p2 = p1 + (<usize>c << 2);              // f32 [c]
  const ca = p2 + (<usize>c << 2);              // f32 [c]: gamma * inv
  const cb = ca + (<usize>c << 2);              // f32 [c]: -gamma * inv^3 * S2 / n
  const cc = cb + (<usize>c << 2);              // f32 [c]: -gamma * inv * S1 / n
  const cm = cc + (<usize>c << 2);              // f32 [c]: mean
  const c4 = c & ~3;
  const rowBytes = <usize>c << 2;
  const zeroV = f32x4.splat(0);
  zero(tg, 4 * c);
  for (let g = 0; g < groups; g++) {
    const base = <usize>g * <usize>rows * rowBytes;
    const xg = x + base;
    const og = out + base;
    const dg = dy + base;
    const dxg = dx + base;
    const meanG = mean + (<usize>g * <usize>c << 2);
    const varG = variance + (<usize>g * <usize>c << 2);
    zero(s1, 4 * c);
    zero(p1, 2 * c);
    for (let r0 = 0; r0 < rows; r0 += CHUNK) {
      const r1 = min(rows, r0 + CHUNK);
      for (let r = r0; r < r1; r++) {
        const off = <usize>r * rowBytes;
        let k = 0;
        for (; k < c4; k += 4) {
          const o = <usize>k << 2;
          let d = v128.load(dg + off + o);
          if (relu != 0) d = v128.and(d, f32x4.gt(v128.load(og + off + o), zeroV));
          const xc = f32x4.sub(v128.load(xg + off + o), v128.load(meanG + o));
          v128.store(p1 + o, f32x4.add(v128.load(p1 + o), d));
          v128.store(p2 + o, f32x4.add(v128.load(p2 + o), f32x4.mul(d, xc)));
        }
        for (; k < c; k++) {
          let d = f32At(dg + off, k);
          if (relu != 0 && !(f32At(og + off, k) > 0)) d = 0;
          setF32(p1, k, f32At(p1, k) + d);
          setF32(p2, k, f32At(p2, k) + d * (f32At(xg + off, k) - f32At(meanG, k)));
        }
      }
      flush(p1, s1, c);
      flush(p2, s2, c);
    }
    for (let k = 0; k < c; k++) {
      const inv = <f64>(<f32>(1.0 / Math.sqrt(<f64>f32At(varG, k) + eps)));
      const gm = <f64>f32At(gamma, k);
      const n = <f64>rows;
      const a = gm * inv;
      setF32(ca, k, <f32>a);
      setF32(cb, k, <f32>(-a * inv * inv * f64At(s2, k) / n));
      setF32(cc, k, <f32>(-a * f64At(s1, k) / n));
      setF32(cm, k, f32At(meanG, k));
      setF64(tg, k, f64At(tg, k) + f64At(s2, k) * inv);
      setF64(tb, k, f64At(tb, k) + f64At(s1, k));
    }
    for (let r = 0; r < rows; r++) {
      const off = <usize>r * rowBytes;
      let k = 0;
      for (; k < c4; k += 4) {
        const o = <usize>k << 2;
        let d = v128.load(dg + off + o);
        if (relu != 0) d = v128.and(d, f32x4.gt(v128.load(og + off + o), zeroV));
        const xc = f32x4.sub(v128.load(xg + off + o), v128.load(cm + o));
        const y = f32x4.add(f32x4.add(f32x4.mul(d, v128.load(ca + o)), f32x4.mul(xc, v128.load(cb + o))), v128.load(cc + o));
        v128.store(dxg + off + o, y);
      }
      for (; k < c; k++) {
        let d = f32At(dg + off, k);
        if (relu != 0 && !(f32At(og + off, k) > 0)) d = 0;
        const xc = f32At(xg + off, k) - f32At(cm, k);
        setF32(dxg + off, k, d * f32At(ca, k) + xc * f32At(cb, k) + f32At(cc, k));
      }
    }
  }
  for (let k = 0; k < c; k++) {
    setF32(dgamma, k, <f32>f64At(tg, k));
    setF32(dbeta, k, <f32>f64At(tb, k));
  }
}

/** ceil(a / b) for b > 0 and any sign of a. */
@inline function ceilDiv(a: i32, b: i32): i32 {
  return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

/**
 * Filter gradient of a 2-D convolution (NHWC, any filter size, strides and padding):
 *   dw[kh, kw, ci, co] = sum_{b, oh, ow} x[b, oh*sh + kh - padTop, ow*sw + kw - padLeft, ci] * dy[b, oh, ow, co]
 * over the taps that fall inside x (zero padding adds nothing).
 *   x: [batch, inH, inW, ci];  dy: [batch, outH, outW, co];  dw: [kH, kW, ci, co] (output).
 * Needs ci % 4 == 0 and co % 8 == 0. No im2col: for each filter tap, register tiles of
 * 4 input x 8 output channels run along the output rows' valid segments, over blocks of about
 * PIX output pixels (which stay in cache across the tiles); each block's tile sums are added to
 * dw in block order.
 */
const PIX: i32 = 128;
export function convBackpropFilter(
  x: usize, dy: usize, dw: usize,
  batch: i32, inH: i32, inW: i32, ci: i32, outH: i32, outW: i32, co: i32,
  kH: i32, kW: i32, sh: i32, sw: i32, padTop: i32, padLeft: i32,
): void {
  zero(dw, kH * kW * ci * co);
  const xStep = <usize>(sw * ci) << 2;
  const dyStep = <usize>co << 2;
  const row = <usize>co << 2;
  for (let kh = 0; kh < kH; kh++) {
    // Output rows whose input row oh*sh + kh - padTop lies inside x.
    const ohLo = max(0, ceilDiv(padTop - kh, sh));
    const ohHi = min(outH, ceilDiv(inH + padTop - kh, sh));
    if (ohHi <= ohLo) continue;
    const nOh = ohHi - ohLo;
    for (let kw = 0; kw < kW; kw++) {
      const owLo = max(0, ceilDiv(padLeft - kw, sw));
      const owHi = min(outW, ceilDiv(inW + padLeft - kw, sw));
      if (owHi <= owLo) continue;
      const len = owHi - owLo;
      const rowsPerBlock = max(1, PIX / len);
      const rows = batch * nOh;
      const wTap = dw + (<usize>((kh * kW + kw) * ci) * <usize>co << 2);
      for (let r0 = 0; r0 < rows; r0 += rowsPerBlock) {
        const r1 = min(rows, r0 + rowsPerBlock);
        for (let c0 = 0; c0 < ci; c0 += 4) {
          for (let o0 = 0; o0 < co; o0 += 8) {
            let a0 = f32x4.splat(0), b0 = f32x4.splat(0);
            let a1 = f32x4.splat(0), b1 = f32x4.splat(0);
            let a2 = f32x4.splat(0), b2 = f32x4.splat(0);
            let a3 = f32x4.splat(0), b3 = f32x4.splat(0);
            // (b, oh) of row r, stepped along without a division per row.
            let b = r0 / nOh;
            let oh = ohLo + r0 % nOh;
            for (let r = r0; r < r1; r++) {
              const ih = oh * sh + kh - padTop;
              const iw = owLo * sw + kw - padLeft;
              let xp = x + ((<usize>(b * inH + ih) * <usize>inW + <usize>iw) * <usize>ci << 2) + (<usize>c0 << 2);
              let dp = dy + ((<usize>(b * outH + oh) * <usize>outW + <usize>owLo) * <usize>co << 2) + (<usize>o0 << 2);
              for (let i = 0; i < len; i++) {
                const d0 = v128.load(dp);
                const d1 = v128.load(dp, 16);
                const x0 = v128.load32_splat(xp);
                const x1 = v128.load32_splat(xp, 4);
                const x2 = v128.load32_splat(xp, 8);
                const x3 = v128.load32_splat(xp, 12);
                a0 = f32x4.add(a0, f32x4.mul(x0, d0));
                b0 = f32x4.add(b0, f32x4.mul(x0, d1));
                a1 = f32x4.add(a1, f32x4.mul(x1, d0));
                b1 = f32x4.add(b1, f32x4.mul(x1, d1));
                a2 = f32x4.add(a2, f32x4.mul(x2, d0));
                b2 = f32x4.add(b2, f32x4.mul(x2, d1));
                a3 = f32x4.add(a3, f32x4.mul(x3, d0));
                b3 = f32x4.add(b3, f32x4.mul(x3, d1));
                xp += xStep;
                dp += dyStep;
              }
              if (++oh == ohHi) {
                oh = ohLo;
                b++;
              }
            }
            const w0 = wTap + ((<usize>c0 * <usize>co + <usize>o0) << 2);
            v128.store(w0, f32x4.add(v128.load(w0), a0));
            v128.store(w0, f32x4.add(v128.load(w0, 16), b0), 16);
            v128.store(w0 + row, f32x4.add(v128.load(w0 + row), a1));
            v128.store(w0 + row, f32x4.add(v128.load(w0 + row, 16), b1), 16);
            v128.store(w0 + 2 * row, f32x4.add(v128.load(w0 + 2 * row), a2));
            v128.store(w0 + 2 * row, f32x4.add(v128.load(w0 + 2 * row, 16), b2), 16);
            v128.store(w0 + 3 * row, f32x4.add(v128.load(w0 + 3 * row), a3));
            v128.store(w0 + 3 * row, f32x4.add(v128.load(w0 + 3 * row, 16), b3), 16);
          }
        }
      }
    }
  }
}

/**
 * Sum over the middle axis: dst[o, k] = scale * sum_r src[o, r, k] for src [outer, reduce, inner]
 * (Sum and Mean over [0, 1, 2] of NHWC: the conv bias and BatchNorm reductions). Rows are
 * added in f32 in chunks of CHUNK rows, the chunks in f64.
 *   scratch: at least 12 * inner bytes, 8-byte aligned.
 */
export function sumMiddleAxis(src: usize, dst: usize, outer: i32, reduce: i32, inner: i32, scale: f64, scratch: usize): void {
  const total = scratch;                        // f64 [inner]
  const part = total + (<usize>inner << 3);     // f32 [inner]
  const c4 = inner & ~3;
  const rowBytes = <usize>inner << 2;
  for (let o = 0; o < outer; o++) {
    const base = src + <usize>o * <usize>reduce * rowBytes;
    zero(total, 2 * inner);
    zero(part, inner);
    for (let r0 = 0; r0 < reduce; r0 += CHUNK) {
      const r1 = min(reduce, r0 + CHUNK);
      for (let r = r0; r < r1; r++) {
        const row = base + <usize>r * rowBytes;
        let k = 0;
        for (; k < c4; k += 4) {
          const off = <usize>k << 2;
          v128.store(part + off, f32x4.add(v128.load(part + off), v128.load(row + off)));
        }
        for (; k < inner; k++) setF32(part, k, f32At(part, k) + f32At(row, k));
      }
      flush(part, total, inner);
    }
    const out = dst + <usize>o * rowBytes;
    for (let k = 0; k < inner; k++) setF32(out, k, <f32>(f64At(total, k) * scale));
  }
}
