import type { EncodedVector, GradientCodec } from './gradient-codec.js';
import { simdProject, simdReconstruct } from './simd/low-rank-kernels.js';

/**
 * Low-rank gradient compression in the single-round, alternating form of PowerSGD (Vogels et al.
 * 2019; the alternating variant is ACP-SGD, Zhang et al. 2023): every weight tensor of two or
 * more dimensions is a matrix M (rows x cols, row-major in the flat parameter vector). In each
 * step one factor is fixed and known to everyone: on even steps an orthonormal R (cols x rank),
 * on odd steps an orthonormal L (rows x rank). A worker sends only its gradient's projection onto
 * the fixed factor, M R (rows x rank) or M^T L (cols x rank), and the parameters that are not
 * matrices (biases, BatchNorm) as they are. Projection is linear, so the sum of the workers'
 * projections is the projection of the summed gradient: the coordinator adds them like any
 * payload, in batch order, and reconstructs the step's gradient as (sum M R) R^T or
 * L (sum M^T L)^T. The summed projection, orthonormalised, becomes the next step's fixed factor:
 * one power iteration per step, alternating sides, so a step needs one round trip, not two.
 *
 * Everything here is arithmetic on plain arrays (no state, no platform), in float64 where peers
 * must agree (the orthonormalisation runs on the coordinator only, and travels as float32).
 */

/** One matrix of the flat vector: `rows x cols` values from `offset`, row-major. */
export interface LowRankMatrix {
  readonly offset: number;
  readonly rows: number;
  readonly cols: number;
}

/** Which factor is fixed this step: R (cols x rank) on even steps, L (rows x rank) on odd. */
export type LowRankSide = 'right' | 'left';

export function sideOfStep(step: number): LowRankSide {
  return step % 2 === 0 ? 'right' : 'left';
}

/** A tensor of the parameter vector, as the model's layout lists them. */
export interface LowRankTensor {
  readonly offset: number;
  readonly shape: readonly number[];
}

/**
 * Which slices of the parameter vector are compressed and how: a matrix is compressed when its
 * projection is smaller than the matrix itself (rank x (rows + cols) < rows x cols); every other
 * value travels as it is, after the projections, in vector order.
 */
export class LowRankPlan {
  readonly paramCount: number;
  readonly rank: number;
  readonly matrices: readonly LowRankMatrix[];
  /** [start, end) ranges of the values sent as they are, in order. */
  readonly passthrough: readonly (readonly [number, number])[];
  readonly passthroughCount: number;

  constructor(paramCount: number, tensors: readonly LowRankTensor[], rank: number) {
    if (!Number.isSafeInteger(rank) || rank < 1) throw new Error(`low-rank: rank must be a whole number >= 1, got ${rank}`);
    this.paramCount = paramCount;
    this.rank = rank;
    const matrices: LowRankMatrix[] = [];
    const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
    for (const t of sorted) {
      if (t.shape.length < 2) continue;
      // Convolution kernels [kh, kw, in, out] and dense kernels [in, out]: the last axis is the
      // output, so a row-major matrix of (everything else) x out.
      const cols = t.shape[t.shape.length - 1]!;
      const rows = t.shape.slice(0, -1).reduce((a, b) => a * b, 1);
      if (rank * (rows + cols) < rows * cols) matrices.push({ offset: t.offset, rows, cols });
    }
    const passthrough: [number, number][] = [];
    let at = 0;
    for (const m of matrices) {
      if (m.offset > at) passthrough.push([at, m.offset]);
      at = m.offset + m.rows * m.cols;
    }
    if (at > paramCount) throw new Error(`low-rank: tensors run to ${at}, past ${paramCount} parameters`);
    if (at < paramCount) passthrough.push([at, paramCount]);
    this.matrices = matrices;
    this.passthrough = passthrough;
    this.passthroughCount = passthrough.reduce((a, [s, e]) => a + e - s, 0);
  }

  /** Values in a worker's payload on a step with this side fixed. */
  payloadLength(side: LowRankSide): number {
    return this.matrices.reduce((a, m) => a + this.rank * (side === 'right' ? m.rows : m.cols), 0) + this.passthroughCount;
  }

  /** Values in the fixed factors of a step with this side fixed (R: cols x rank, L: rows x rank). */
  factorLength(side: LowRankSide): number {
    return this.matrices.reduce((a, m) => a + this.rank * (side === 'right' ? m.cols : m.rows), 0);
  }

  /**
   * The payload for `values` with `factors` (the fixed side's, as factorLength says) fixed:
   * each matrix's projection, then the passthrough values. `out` has payloadLength(side) room.
   */
  project(values: Float32Array, side: LowRankSide, factors: Float32Array, out: Float32Array): void {
    this.check(values, side, factors);
    if (out.length !== this.payloadLength(side)) throw new Error(`low-rank: room for ${out.length} payload values, ${this.payloadLength(side)} needed`);
    if (!simdProject(this.matrices, this.rank, values, side, factors, out)) this.projectMatrices(values, side, factors, out);
    let p = this.payloadLength(side) - this.passthroughCount;
    for (const [s, e] of this.passthrough) {
      out.set(values.subarray(s, e), p);
      p += e - s;
    }
  }

  /** project's matrices in JavaScript, where the SIMD kernels cannot run (the same bits). */
  private projectMatrices(values: Float32Array, side: LowRankSide, factors: Float32Array, out: Float32Array): void {
    const r = this.rank;
    let p = 0;
    let f = 0;
    for (const { offset, rows, cols } of this.matrices) {
      // Row by row, so the matrix is read once in order, against the fixed factor transposed
      // (rank x n), so every inner loop runs over contiguous memory.
      if (side === 'right') {
        // (M R)[i, k] = sum_j M[i, j] R[j, k]
        const rt = transposed(factors, f, cols, r);
        for (let i = 0; i < rows; i++) {
          const row = offset + i * cols;
          for (let k = 0; k < r; k++) {
            let sum = 0;
            for (let j = 0, t = k * cols; j < cols; j++, t++) sum += values[row + j]! * rt[t]!;
            out[p + i * r + k] = sum;
          }
        }
      } else {
        // (M^T L)[j, k] = sum_i M[i, j] L[i, k], accumulated transposed (rank x cols)
        const acc = new Float64Array(r * cols);
        for (let i = 0; i < rows; i++) {
          const row = offset + i * cols;
          for (let k = 0; k < r; k++) {
            const l = factors[f + i * r + k]!;
            for (let j = 0, t = k * cols; j < cols; j++, t++) acc[t] += values[row + j]! * l;
          }
        }
        for (let j = 0; j < cols; j++) for (let k = 0; k < r; k++) out[p + j * r + k] = acc[k * cols + j]!;
      }
      p += (side === 'right' ? rows : cols) * r;
      f += (side === 'right' ? cols : rows) * r;
    }
  }

  /**
   * The full-length vector a payload stands for: each matrix as (projection) x (fixed factor)^T
   * in the right orientation, the passthrough values as they are. `out` has paramCount room.
   */
  reconstruct(payload: Float32Array, side: LowRankSide, factors: Float32Array, out: Float32Array): void {
    if (payload.length !== this.payloadLength(side)) throw new Error(`low-rank: a payload of ${payload.length} values, ${this.payloadLength(side)} expected`);
    if (factors.length !== this.factorLength(side)) throw new Error(`low-rank: ${factors.length} factor values, ${this.factorLength(side)} expected`);
    if (out.length !== this.paramCount) throw new Error(`low-rank: room for ${out.length} values, ${this.paramCount} needed`);
    if (!simdReconstruct(this.matrices, this.rank, payload, side, factors, out)) this.reconstructMatrices(payload, side, factors, out);
    let p = this.payloadLength(side) - this.passthroughCount;
    for (const [s, e] of this.passthrough) {
      out.set(payload.subarray(p, p + e - s), s);
      p += e - s;
    }
  }

  /** reconstruct's matrices in JavaScript, where the SIMD kernels cannot run (the same bits). */
  private reconstructMatrices(payload: Float32Array, side: LowRankSide, factors: Float32Array, out: Float32Array): void {
    const r = this.rank;
    let p = 0;
    let f = 0;
    for (const { offset, rows, cols } of this.matrices) {
      // M^[i, j] = sum_k A[i, k] B[j, k], A rows x rank and B cols x rank: a row of A held while
      // the rows of B pass by, in order.
      const [a, b] = side === 'right' ? [p, f] : [f, p];
      const [aSource, bSource] = side === 'right' ? [payload, factors] : [factors, payload];
      const aRow = new Float64Array(r);
      for (let i = 0; i < rows; i++) {
        for (let k = 0; k < r; k++) aRow[k] = aSource[a + i * r + k]!;
        const at = offset + i * cols;
        for (let j = 0, bj = b; j < cols; j++, bj += r) {
          let sum = 0;
          for (let k = 0; k < r; k++) sum += aRow[k]! * bSource[bj + k]!;
          out[at + j] = sum;
        }
      }
      p += (side === 'right' ? rows : cols) * r;
      f += (side === 'right' ? cols : rows) * r;
    }
  }

  /**
   * The next step's fixed factors from this step's summed (or mean) payload: each matrix's
   * projection, orthonormalised column by column (Gram-Schmidt, twice, in float64). On a
   * right step the projections are rows x rank and become L; on a left step, cols x rank, R.
   */
  nextFactors(payload: Float32Array, side: LowRankSide): Float32Array {
    if (payload.length !== this.payloadLength(side)) throw new Error(`low-rank: a payload of ${payload.length} values, ${this.payloadLength(side)} expected`);
    const next: LowRankSide = side === 'right' ? 'left' : 'right';
    const out = new Float32Array(this.factorLength(next));
    let p = 0;
    for (const m of this.matrices) {
      const n = (side === 'right' ? m.rows : m.cols) * this.rank;
      out.set(orthonormalColumns(payload.subarray(p, p + n), n / this.rank, this.rank), p);
      p += n;
    }
    return out;
  }

  /**
   * Orthonormal R factors for step 0 from `uint32`, a deterministic stream of uint32s (the
   * coordinator's comes from the run's seed, @chorus/data's createRng): the same stream gives
   * the same bits on every engine, so a rerun starts from the same factors.
   */
  initialFactors(uint32: () => number): Float32Array {
    const out = new Float32Array(this.factorLength('right'));
    let f = 0;
    for (const m of this.matrices) {
      const n = m.cols * this.rank;
      const g = new Float32Array(n);
      for (let q = 0; q < n; q++) g[q] = uint32() / 4294967296 - 0.5;
      out.set(orthonormalColumns(g, m.cols, this.rank), f);
      f += n;
    }
    return out;
  }

  private check(values: Float32Array, side: LowRankSide, factors: Float32Array): void {
    if (values.length !== this.paramCount) throw new Error(`low-rank: ${values.length} values for ${this.paramCount} parameters`);
    if (factors.length !== this.factorLength(side)) throw new Error(`low-rank: ${factors.length} factor values, ${this.factorLength(side)} expected`);
  }
}

/** The n x rank row-major block of `source` at `from`, transposed (rank x n), in float64. */
function transposed(source: Float32Array, from: number, n: number, rank: number): Float64Array {
  const t = new Float64Array(rank * n);
  for (let j = 0; j < n; j++) for (let k = 0; k < rank; k++) t[k * n + j] = source[from + j * rank + k]!;
  return t;
}

/**
 * The columns of a rows x rank row-major matrix made orthonormal, in float64 (modified
 * Gram-Schmidt, run twice for float64-level orthogonality), rounded to float32. A column with
 * nothing left after removing the others (a zero gradient, a rank-deficient one) becomes the
 * first unit vector that is not yet spanned, so the factor stays orthonormal whatever comes in.
 */
export function orthonormalColumns(source: Float32Array, rows: number, rank: number): Float32Array {
  if (source.length !== rows * rank) throw new Error(`orthonormalColumns: ${source.length} values for ${rows} x ${rank}`);
  if (rank > rows) throw new Error(`orthonormalColumns: rank ${rank} exceeds ${rows} rows`);
  const cols: Float64Array[] = [];
  let unit = 0;
  for (let k = 0; k < rank; k++) {
    const v = new Float64Array(rows);
    for (let i = 0; i < rows; i++) {
      const x = source[i * rank + k]!;
      v[i] = Number.isFinite(x) ? x : 0;
    }
    let norm = orthogonalise(v, cols);
    while (!(norm > 1e-30)) {
      v.fill(0);
      v[unit++ % rows] = 1;
      norm = orthogonalise(v, cols);
    }
    for (let i = 0; i < rows; i++) v[i]! /= norm;
    cols.push(v);
  }
  const out = new Float32Array(rows * rank);
  for (let k = 0; k < rank; k++) for (let i = 0; i < rows; i++) out[i * rank + k] = cols[k]![i]!;
  return out;
}

/** Removes from v its components along `basis` (twice) and returns what norm is left. */
function orthogonalise(v: Float64Array, basis: readonly Float64Array[]): number {
  const scale = Math.sqrt(dot(v, v));
  if (!(scale > 0)) return 0;
  for (let pass = 0; pass < 2; pass++) {
    for (const u of basis) {
      const c = dot(u, v);
      for (let i = 0; i < v.length; i++) v[i]! -= c * u[i]!;
    }
  }
  const norm = Math.sqrt(dot(v, v));
  // Relative to where it started: what is left of a vector inside the span is rounding.
  return norm > 1e-6 * scale ? norm : 0;
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/**
 * A worker's uplink for a low-rank run, with error feedback as for the other codecs: the
 * gradient sum plus the carried residual is projected onto the step's fixed factors, the
 * projection encoded in the run's codec, and whatever the coordinator will not reconstruct from
 * that payload (the part outside the factors' span, and the codec's rounding) is carried to the
 * next shard. Start it again after a welcome by the same rule as ErrorFeedback.
 */
export class LowRankFeedback {
  readonly plan: LowRankPlan;
  readonly codec: GradientCodec;
  private readonly residual: Float32Array;
  private readonly corrected: Float32Array;
  private readonly approximation: Float32Array;

  constructor(plan: LowRankPlan, codec: GradientCodec) {
    this.plan = plan;
    this.codec = codec;
    this.residual = new Float32Array(plan.paramCount);
    this.corrected = new Float32Array(plan.paramCount);
    this.approximation = new Float32Array(plan.paramCount);
  }

  /** The payload for `sum` on a step with `side` fixed at `factors`; keeps what it loses. */
  encode(sum: Float32Array, side: LowRankSide, factors: Float32Array): EncodedVector {
    const { plan, residual, corrected, approximation } = this;
    if (sum.length !== plan.paramCount) throw new Error(`low-rank feedback: ${sum.length} values; this encoder holds ${plan.paramCount}`);
    for (let i = 0; i < sum.length; i++) corrected[i] = sum[i]! + residual[i]!;
    const projection = new Float32Array(plan.payloadLength(side));
    plan.project(corrected, side, factors, projection);
    const encoded = this.codec.encode(projection);
    plan.reconstruct(this.codec.expand(encoded), side, factors, approximation);
    for (let i = 0; i < sum.length; i++) residual[i] = corrected[i]! - approximation[i]!;
    return encoded;
  }

  reset(): void {
    this.residual.fill(0);
  }

  /** Takes `part` back out of the carried residual (ErrorFeedback.withdraw). */
  withdraw(part: Float32Array): void {
    const { residual } = this;
    if (part.length !== residual.length) throw new Error(`low-rank feedback: withdrawing ${part.length} values from ${residual.length}`);
    for (let i = 0; i < residual.length; i++) residual[i] -= part[i]!;
  }

  /** The residual carried into the next encode (read-only view, for tests). */
  get carried(): Float32Array {
    return this.residual;
  }
}
