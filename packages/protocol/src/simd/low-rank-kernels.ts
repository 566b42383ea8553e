/**
 * Low-rank compression's matrix loops in WebAssembly SIMD (assembly/low-rank-kernels.ts): the
 * projection of a gradient onto the step's fixed factors, and the reconstruction of a payload,
 * for every compressed matrix of the parameter vector in one call. Each gives the same bits as
 * the JavaScript loops of LowRankPlan (test/low-rank-kernels.test.ts compares them), so the
 * coordinator's reconstruction is the same with and without SIMD and a run resumes on either.
 * Each returns false, having written nothing that counts, where the module cannot run (see
 * EmbeddedSimdModule.prepare); the caller then runs its JavaScript loops.
 */
import { EmbeddedSimdModule, copyOut } from './embedded-module.js';
import { LOW_RANK_KERNELS_WASM } from './low-rank.generated.js';
import type { LowRankMatrix, LowRankSide } from '../low-rank.js';

interface LowRankKernelExports {
  memory: WebAssembly.Memory;
  widen(src: number, out64: number, n: number): void;
  widenTransposed(src: number, out64: number, n: number, rank: number): void;
  projectRight(m: number, r64: number, out: number, rows: number, cols: number, rank: number): void;
  projectLeft(m: number, l: number, acc64: number, out: number, rows: number, cols: number, rank: number): void;
  reconstruct(a: number, bt64: number, out: number, rows: number, cols: number, rank: number): void;
}

const lowRankKernels = new EmbeddedSimdModule<LowRankKernelExports>(LOW_RANK_KERNELS_WASM);

/** Turns the low-rank kernels off or on (tests and benchmarks compare both paths); returns the previous setting. */
export function setLowRankKernelsEnabled(on: boolean): boolean {
  return lowRankKernels.setEnabled(on);
}

/** Bytes of float64 scratch the kernels need beside the operands: one factor (or one projection's sums), widened. */
function scratchBytes(matrices: readonly LowRankMatrix[], rank: number): number {
  return 8 * rank * matrices.reduce((a, m) => Math.max(a, m.cols), 0);
}

/**
 * Writes each matrix's projection of `values` onto `factors` (the fixed side's) into `out`, in
 * plan order from its start. What it leaves after the projections is unspecified: the caller
 * writes the values that go there (LowRankPlan.project, its passthrough values).
 */
export function simdProject(matrices: readonly LowRankMatrix[], rank: number, values: Float32Array, side: LowRankSide, factors: Float32Array, out: Float32Array): boolean {
  const r = lowRankKernels.prepare(values.length, values, factors, { output: out }, scratchBytes(matrices, rank));
  if (!r) return false;
  const [k, buffer, v, f, o, wide] = r as [LowRankKernelExports, ArrayBuffer, number, number, number, number];
  let p = 0;
  let q = 0;
  for (const { offset, rows, cols } of matrices) {
    const m = v + 4 * offset;
    if (side === 'right') {
      k.widen(f + 4 * q, wide, cols * rank);
      k.projectRight(m, wide, o + 4 * p, rows, cols, rank);
      p += rows * rank;
      q += cols * rank;
    } else {
      k.projectLeft(m, f + 4 * q, wide, o + 4 * p, rows, cols, rank);
      p += cols * rank;
      q += rows * rank;
    }
  }
  copyOut(buffer, o, out);
  return true;
}

/**
 * Writes each matrix that `payload` stands for, with `factors` fixed, into `out` (the whole
 * parameter vector) where the plan puts it. What it leaves between the matrices is unspecified:
 * the caller writes the values that go there (LowRankPlan.reconstruct, its passthrough values).
 */
export function simdReconstruct(matrices: readonly LowRankMatrix[], rank: number, payload: Float32Array, side: LowRankSide, factors: Float32Array, out: Float32Array): boolean {
  const r = lowRankKernels.prepare(out.length, payload, factors, { output: out }, scratchBytes(matrices, rank));
  if (!r) return false;
  const [k, buffer, pay, f, o, wide] = r as [LowRankKernelExports, ArrayBuffer, number, number, number, number];
  let p = 0;
  let q = 0;
  for (const { offset, rows, cols } of matrices) {
    // M^ = A B^T: on a right step A is the projection (rows x rank) and B the factor R (cols x
    // rank); on a left step A is the factor L and B the projection (cols x rank).
    const [a, b] = side === 'right' ? [pay + 4 * p, f + 4 * q] : [f + 4 * q, pay + 4 * p];
    k.widenTransposed(b, wide, cols, rank);
    k.reconstruct(a, wide, o + 4 * offset, rows, cols, rank);
    p += (side === 'right' ? rows : cols) * rank;
    q += (side === 'right' ? cols : rows) * rank;
  }
  copyOut(buffer, o, out);
  return true;
}
