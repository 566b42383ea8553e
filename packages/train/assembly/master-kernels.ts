// The coordinator's per-step arithmetic on the master weights in WebAssembly SIMD
// (AssemblyScript, compiled by scripts/build-wasm.mjs into src/simd/module.generated.ts): the
// batch mean of the summed gradient and the SGD step. Arguments named like arrays are byte
// offsets into this module's own memory, where src/simd/master-kernels.ts copies the operands.
// Each kernel gives the bits of the JavaScript loop it stands in for: float32 division is
// correctly rounded in both, and the SGD step is computed in float64, operation for operation,
// as JavaScript computes it, with float32 rounding only where JavaScript stores.

@inline function at(p: usize, i: i32): usize {
  return p + (<usize>i << 2);
}

/** out[i] = sum[i] / count (float32). */
export function meanOf(sum: usize, out: usize, n: i32, count: f32): void {
  const c = f32x4.splat(count);
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(at(out, i), f32x4.div(v128.load(at(sum, i)), c));
  for (; i < n; i++) store<f32>(at(out, i), load<f32>(at(sum, i)) / count);
}

@inline function high(v: v128): v128 {
  return f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1));
}

@inline function narrow(lo: v128, hi: v128): v128 {
  return v128.shuffle<f32>(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5);
}

/**
 * SGD with momentum (Nesterov when `nesterov` is 1) and L2 weight decay where mask[i] is 1:
 *   g = gradient + (mask ? weightDecay * param : 0);  v = momentum * velocity + g;
 *   velocity = float32(v);  param = float32(param - lr * (nesterov ? g + momentum * v : v))
 * with g and v kept in float64 between the lines, as in the JavaScript loop.
 */
export function sgdStep(params: usize, gradient: usize, velocity: usize, mask: usize, n: i32, lr: f64, momentum: f64, nesterov: i32, weightDecay: f64): void {
  const lrv = f64x2.splat(lr);
  const mv = f64x2.splat(momentum);
  const wdv = f64x2.splat(weightDecay);
  const zero = f64x2.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const p = v128.load(at(params, i));
    const gr = v128.load(at(gradient, i));
    const vel = v128.load(at(velocity, i));
    // Four mask bytes, widened to two lanes of all ones (decayed) or zeros each.
    const on = i32x4.ne(i32x4.extend_low_i16x8_u(i16x8.extend_low_i8x16_u(v128.load32_zero(mask + <usize>i))), i32x4.splat(0));
    const onLo = i64x2.extend_low_i32x4_s(on);
    const onHi = i64x2.extend_high_i32x4_s(on);
    const pLo = f64x2.promote_low_f32x4(p);
    const pHi = high(p);
    const gLo = f64x2.add(f64x2.promote_low_f32x4(gr), v128.bitselect(f64x2.mul(wdv, pLo), zero, onLo));
    const gHi = f64x2.add(high(gr), v128.bitselect(f64x2.mul(wdv, pHi), zero, onHi));
    const vLo = f64x2.add(f64x2.mul(mv, f64x2.promote_low_f32x4(vel)), gLo);
    const vHi = f64x2.add(f64x2.mul(mv, high(vel)), gHi);
    v128.store(at(velocity, i), narrow(vLo, vHi));
    const sLo = nesterov ? f64x2.add(gLo, f64x2.mul(mv, vLo)) : vLo;
    const sHi = nesterov ? f64x2.add(gHi, f64x2.mul(mv, vHi)) : vHi;
    v128.store(at(params, i), narrow(f64x2.sub(pLo, f64x2.mul(lrv, sLo)), f64x2.sub(pHi, f64x2.mul(lrv, sHi))));
  }
  for (; i < n; i++) {
    const p = <f64>load<f32>(at(params, i));
    const g = <f64>load<f32>(at(gradient, i)) + (load<u8>(mask + <usize>i) ? weightDecay * p : 0);
    const v = momentum * <f64>load<f32>(at(velocity, i)) + g;
    store<f32>(at(velocity, i), <f32>v);
    store<f32>(at(params, i), <f32>(p - lr * (nesterov ? g + momentum * v : v)));
  }
}
