import { advanceInt8, type EncodedVector, type GradientCodec } from './gradient-codec.js';
import { residentVectors, simdSubF32 } from './simd/vector-kernels.js';

/**
 * Adds a decoded delta to public weights in place. The coordinator's copy and every worker's
 * go through this one function, so all of them hold the same bits: decoding is a pure function
 * of the payload and float32 addition is correctly rounded in every JavaScript engine. The
 * payload is sound already (a worker's came through parseMessage; the coordinator's own was
 * just encoded), so it is expanded without decode's checks; its length must match.
 */
export function applyDelta(codec: GradientCodec, payload: EncodedVector, weights: Float32Array): void {
  if (payload.values.length !== weights.length) throw new Error(`a delta of ${payload.values.length} values for ${weights.length} weights`);
  codec.addTo(payload, weights);
}

/**
 * The coordinator's copy of the public weights: what every worker holds and computes its
 * gradients at, under a compressed codec. Each update sends the encoded difference between the
 * master weights and this copy, and applies to the copy exactly what it sent, so what rounding
 * loses in one update is still in the difference the next one sends: the public weights trail
 * the master by at most one quantum, never by an accumulated drift. The master weights and the
 * optimizer stay fp32.
 */
export class PublicWeights {
  readonly codec: GradientCodec;
  /** The public weights; changed in place by advance(). */
  readonly weights: Float32Array;
  private readonly difference: Float32Array;

  constructor(codec: GradientCodec, initial: Float32Array) {
    this.codec = codec;
    // Both resident in the codec kernels' memory: each advance then copies in only the master
    // weights and the encoded delta. Room for those and for the encoding's own output.
    const n = initial.length;
    [this.weights, this.difference] = residentVectors([n, n], 4 * n + 2 * n + n + 4 * n + 256);
    this.weights.set(initial);
  }

  /** The payload that moves every worker's copy toward `master`, already applied to this one. */
  advance(master: Float32Array): EncodedVector {
    if (master.length !== this.weights.length) throw new Error(`public weights: ${master.length} master weights for ${this.weights.length} public ones`);
    const { weights, difference } = this;
    if (this.codec.name === 'int8') {
      // Subtract, encode and apply in one pass where the kernels run (the same bits).
      const payload = advanceInt8(master, weights, difference);
      if (payload) return payload;
    }
    if (!simdSubF32(master, weights, difference)) {
      for (let i = 0; i < weights.length; i++) difference[i] = master[i] - weights[i];
    }
    const payload = this.codec.encode(difference);
    applyDelta(this.codec, payload, weights);
    return payload;
  }
}
