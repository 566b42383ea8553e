import { ProtocolError } from './errors.js';

/**
 * How a gradient is packed for the wire. The run names one codec (run.codec) and every worker
 * and the coordinator use it, so compressed codecs (fp16, int8) can be added by name without
 * another message type. `decode` gets the element count because a compressed payload's
 * length alone does not say it.
 */
export interface GradientCodec {
  readonly name: 'fp32' | (string & {});
  encode(gradient: Float32Array): Float32Array | Uint8Array;
  decode(payload: Float32Array | Uint8Array, length: number): Float32Array;
}

/** Raw float32: encode and decode hand back the same array, so a gradient is never copied. */
export const fp32Codec: GradientCodec = {
  name: 'fp32',
  encode(gradient) {
    return gradient;
  },
  decode(payload, length) {
    const floats = payload instanceof Float32Array ? payload : asFloat32(payload);
    if (floats.length !== length) {
      throw new ProtocolError('bad-gradient', `fp32 gradient has ${floats.length} elements; expected ${length}`);
    }
    return floats;
  },
};

/** Raw bytes from a codec-agnostic transport: a view when aligned, a copy only when not. */
function asFloat32(bytes: Uint8Array): Float32Array {
  if (bytes.byteLength % 4 !== 0) {
    throw new ProtocolError('bad-gradient', `fp32 gradient is ${bytes.byteLength} bytes, not a whole number of floats`);
  }
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  // Uint8Array.prototype.slice, not Buffer#slice, which would return another unaligned view.
  return new Float32Array(Uint8Array.prototype.slice.call(bytes).buffer);
}

// fp16 and int8 join here: one entry each, and run.codec's type in messages.ts widens to match.
const CODECS: ReadonlyMap<string, GradientCodec> = new Map([[fp32Codec.name, fp32Codec]]);

export const GRADIENT_CODEC_NAMES: readonly string[] = [...CODECS.keys()];

/** The codec a run names. Unknown names throw rather than fall back: mixed codecs corrupt sums. */
export function getGradientCodec(name: string): GradientCodec {
  const codec = CODECS.get(name);
  if (!codec) {
    throw new ProtocolError('malformed', `unknown gradient codec ${JSON.stringify(name)}; this build knows ${GRADIENT_CODEC_NAMES.join(', ')}`);
  }
  return codec;
}
