// Low-rank compression's matrix loops in WebAssembly SIMD (AssemblyScript, compiled by
// scripts/build-wasm.mjs into src/simd/low-rank.generated.ts).
//
// Every argument named like an array is a byte offset into this module's own memory, where
// src/simd/low-rank-kernels.ts places the operands. The module has no data segments, globals or
// allocator. Each kernel gives the same bits as the JavaScript loop it stands in for
// (src/low-rank.ts): every output is a float64 sum that starts at 0 and adds float64 products in
// the same order there and here; the lanes of a vector are different outputs, never parts of one
// sum, so no addition is reordered. Float32 inputs widen to float64 exactly, and the one rounding
// to float32 at the end is the same round-to-nearest as a Float32Array store.

@inline function f32At(p: usize, i: i32): usize {
  return p + (<usize>i << 2);
}

@inline function f64At(p: usize, i: i32): usize {
  return p + (<usize>i << 3);
}

/** Two float32 at p, widened to a float64 pair. */
@inline function widenPair(p: usize): v128 {
  return f64x2.promote_low_f32x4(v128.load64_zero(p));
}

/** A float64 pair rounded to two float32 at p. */
@inline function storeNarrowPair(p: usize, v: v128): void {
  v128.store64_lane(p, f32x4.demote_f64x2_zero(v), 0);
}

/** out64[i] = float64(src[i]) for n values. */
export function widen(src: usize, out64: usize, n: i32): void {
  let i = 0;
  for (; i + 2 <= n; i += 2) v128.store(f64At(out64, i), widenPair(f32At(src, i)));
  for (; i < n; i++) store<f64>(f64At(out64, i), <f64>load<f32>(f32At(src, i)));
}

/**
 * out64 (rank x n) = the n x rank row-major float32 block at src, transposed and widened: the
 * layout in which a pair of neighbouring outputs reads its two factors with one load.
 */
export function widenTransposed(src: usize, out64: usize, n: i32, rank: i32): void {
  for (let j = 0; j < n; j++) {
    for (let k = 0; k < rank; k++) store<f64>(f64At(out64, k * n + j), <f64>load<f32>(f32At(src, j * rank + k)));
  }
}

/**
 * (M R)[i, k] = sum_j M[i, j] R[j, k]: m is rows x cols float32, r64 the factor R (cols x rank)
 * widened in its own layout, out rows x rank float32. Pairs of k share a vector; up to four
 * pairs are summed in one pass over a row, which reads each M[i, j] once for all of them.
 */
export function projectRight(m: usize, r64: usize, out: usize, rows: i32, cols: i32, rank: i32): void {
  const stride = <usize>rank << 3;
  for (let i = 0; i < rows; i++) {
    const row = f32At(m, i * cols);
    const o = f32At(out, i * rank);
    let k = 0;
    for (; k + 8 <= rank; k += 8) {
      let a0 = f64x2.splat(0);
      let a1 = f64x2.splat(0);
      let a2 = f64x2.splat(0);
      let a3 = f64x2.splat(0);
      let f = f64At(r64, k);
      for (let j = 0; j < cols; j++, f += stride) {
        const x = f64x2.splat(<f64>load<f32>(f32At(row, j)));
        a0 = f64x2.add(a0, f64x2.mul(x, v128.load(f)));
        a1 = f64x2.add(a1, f64x2.mul(x, v128.load(f + 16)));
        a2 = f64x2.add(a2, f64x2.mul(x, v128.load(f + 32)));
        a3 = f64x2.add(a3, f64x2.mul(x, v128.load(f + 48)));
      }
      storeNarrowPair(f32At(o, k), a0);
      storeNarrowPair(f32At(o, k + 2), a1);
      storeNarrowPair(f32At(o, k + 4), a2);
      storeNarrowPair(f32At(o, k + 6), a3);
    }
    for (; k + 4 <= rank; k += 4) {
      let a0 = f64x2.splat(0);
      let a1 = f64x2.splat(0);
      let f = f64At(r64, k);
      for (let j = 0; j < cols; j++, f += stride) {
        const x = f64x2.splat(<f64>load<f32>(f32At(row, j)));
        a0 = f64x2.add(a0, f64x2.mul(x, v128.load(f)));
        a1 = f64x2.add(a1, f64x2.mul(x, v128.load(f + 16)));
      }
      storeNarrowPair(f32At(o, k), a0);
      storeNarrowPair(f32At(o, k + 2), a1);
    }
    for (; k + 2 <= rank; k += 2) {
      let a0 = f64x2.splat(0);
      let f = f64At(r64, k);
      for (let j = 0; j < cols; j++, f += stride) a0 = f64x2.add(a0, f64x2.mul(f64x2.splat(<f64>load<f32>(f32At(row, j))), v128.load(f)));
      storeNarrowPair(f32At(o, k), a0);
    }
    for (; k < rank; k++) {
      let s: f64 = 0;
      let f = f64At(r64, k);
      for (let j = 0; j < cols; j++, f += stride) s += <f64>load<f32>(f32At(row, j)) * load<f64>(f);
      store<f32>(f32At(o, k), <f32>s);
    }
  }
}

/**
 * (M^T L)[j, k] = sum_i M[i, j] L[i, k]: m is rows x cols float32, l the factor L (rows x rank)
 * float32, acc64 room for rank x cols float64 (the sums, transposed, as the JavaScript keeps
 * them), out cols x rank float32. Pairs of j share a vector; the sums run over i in order.
 */
export function projectLeft(m: usize, l: usize, acc64: usize, out: usize, rows: i32, cols: i32, rank: i32): void {
  memory.fill(acc64, 0, <usize>(rank * cols) << 3);
  for (let i = 0; i < rows; i++) {
    const row = f32At(m, i * cols);
    for (let k = 0; k < rank; k++) {
      const lk = <f64>load<f32>(f32At(l, i * rank + k));
      const lv = f64x2.splat(lk);
      const a = f64At(acc64, k * cols);
      let j = 0;
      for (; j + 2 <= cols; j += 2) {
        const p = f64At(a, j);
        v128.store(p, f64x2.add(v128.load(p), f64x2.mul(widenPair(f32At(row, j)), lv)));
      }
      for (; j < cols; j++) {
        const p = f64At(a, j);
        store<f64>(p, load<f64>(p) + <f64>load<f32>(f32At(row, j)) * lk);
      }
    }
  }
  for (let j = 0; j < cols; j++) {
    for (let k = 0; k < rank; k++) store<f32>(f32At(out, j * rank + k), <f32>load<f64>(f64At(acc64, k * cols + j)));
  }
}

/**
 * out (rows x cols float32) = A B^T: a is rows x rank float32, bt64 is B (cols x rank) transposed
 * and widened (rank x cols, widenTransposed). Pairs of j share a vector; each sum runs over k in
 * order.
 */
export function reconstruct(a: usize, bt64: usize, out: usize, rows: i32, cols: i32, rank: i32): void {
  for (let i = 0; i < rows; i++) {
    const ai = f32At(a, i * rank);
    const o = f32At(out, i * cols);
    let j = 0;
    for (; j + 4 <= cols; j += 4) {
      let s0 = f64x2.splat(0);
      let s1 = f64x2.splat(0);
      for (let k = 0; k < rank; k++) {
        const x = f64x2.splat(<f64>load<f32>(f32At(ai, k)));
        const b = f64At(bt64, k * cols + j);
        s0 = f64x2.add(s0, f64x2.mul(x, v128.load(b)));
        s1 = f64x2.add(s1, f64x2.mul(x, v128.load(b + 16)));
      }
      storeNarrowPair(f32At(o, j), s0);
      storeNarrowPair(f32At(o, j + 2), s1);
    }
    for (; j < cols; j++) {
      let s: f64 = 0;
      for (let k = 0; k < rank; k++) s += <f64>load<f32>(f32At(ai, k)) * load<f64>(f64At(bt64, k * cols + j));
      store<f32>(f32At(o, j), <f32>s);
    }
  }
}
