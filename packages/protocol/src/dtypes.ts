/**
 * The element types a frame's tails may carry. The wire names are short and fixed: they are
 * part of the frame format, not JavaScript class names, so a decoder in another language can
 * read them without knowing JS.
 */
export type Dtype = 'f32' | 'i32' | 'u16' | 'u8' | 'i8';

/** u16 carries fp16 bit patterns, i8 int8 quanta (the compressed codecs, gradient-codec.ts). */
export type TailArray = Float32Array | Int32Array | Uint16Array | Uint8Array | Int8Array;

interface DtypeInfo {
  readonly bytes: number;
  readonly create: (buffer: ArrayBufferLike, byteOffset: number, length: number) => TailArray;
}

const DTYPES: Readonly<Record<Dtype, DtypeInfo>> = {
  f32: { bytes: 4, create: (b, o, n) => new Float32Array(b, o, n) },
  i32: { bytes: 4, create: (b, o, n) => new Int32Array(b, o, n) },
  u16: { bytes: 2, create: (b, o, n) => new Uint16Array(b, o, n) },
  u8: { bytes: 1, create: (b, o, n) => new Uint8Array(b, o, n) },
  i8: { bytes: 1, create: (b, o, n) => new Int8Array(b, o, n) },
};

export function isDtype(name: unknown): name is Dtype {
  return typeof name === 'string' && Object.hasOwn(DTYPES, name);
}

export function dtypeBytes(dtype: Dtype): number {
  return DTYPES[dtype].bytes;
}

/** A view of `length` elements; the caller guarantees alignment and bounds. */
export function createTail(dtype: Dtype, buffer: ArrayBufferLike, byteOffset: number, length: number): TailArray {
  return DTYPES[dtype].create(buffer, byteOffset, length);
}

/**
 * The dtype of a value that travels as a tail, or undefined for anything else. Subclasses
 * (Node's Buffer is a Uint8Array) count as their base class; other views (Float64Array,
 * DataView, ...) are not representable and return null so the encoder can refuse them.
 */
export function dtypeOf(value: unknown): Dtype | null | undefined {
  if (value instanceof Float32Array) return 'f32';
  if (value instanceof Int32Array) return 'i32';
  if (value instanceof Uint16Array) return 'u16';
  if (value instanceof Uint8Array) return 'u8';
  if (value instanceof Int8Array) return 'i8';
  if (ArrayBuffer.isView(value)) return null;
  return undefined;
}

/**
 * Tails are raw little-endian bytes and decoding hands out views of them, which is only right
 * on a little-endian host. Every browser and Node platform Chorus targets is one; a big-endian
 * host gets a clear error instead of silently byte-swapped weights.
 */
export const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
