/**
 * The frame format: one message per binary WebSocket frame.
 *
 *   offset 0   uint32 LE   header length H
 *   offset 4   H bytes     msgpack map { fields: {...}, tails: [[name, dtype, count], ...] }
 *              zero bytes  up to the next multiple of 4
 *   then, per tail, in descriptor order:
 *              count * sizeof(dtype) raw little-endian bytes, zero-padded to a multiple of 4
 *
 * A frame's length is therefore always a multiple of 4, and every tail starts 4-byte aligned
 * relative to the frame start. That alignment is what lets the decoder hand out Float32Array
 * views into the received bytes instead of copying megabytes of weights per message.
 */
import { Packr, Unpackr } from 'msgpackr';
import {
  type Dtype,
  type TailArray,
  HOST_IS_LITTLE_ENDIAN,
  createTail,
  dtypeBytes,
  dtypeOf,
  isDtype,
} from './dtypes.js';
import { ProtocolError, quote } from './errors.js';
import type { Message } from './messages.js';

export const HEADER_LENGTH_BYTES = 4;
/** Longest tail name a decoder accepts; real ones are field names like `bnMoments`. */
export const MAX_TAIL_NAME_LENGTH = 64;
/** Messages have at most three tails; the cap stops a header of a million empty ones. */
export const MAX_TAILS = 16;

export type TailDescriptor = [name: string, dtype: Dtype, count: number];

// Plain msgpack maps (no msgpackr records) so any msgpack decoder can read a header, and no
// structured-clone references, which would let a peer send cyclic objects.
const packr = new Packr({ useRecords: false, structuredClone: false });
const unpackr = new Unpackr({ useRecords: false, structuredClone: false, mapsAsObjects: true });

export function align4(n: number): number {
  return (n + 3) & ~3;
}

/** A message split into its header bytes and tails, with the exact frame size. */
export interface FramePlan {
  /** Valid only until the next planFrame call: msgpackr reuses its output buffer. */
  readonly header: Uint8Array;
  readonly tails: readonly TailArray[];
  readonly byteLength: number;
}

/** @internal Shared by encodeMessage and FrameWriter; write the plan before planning again. */
export function planFrame(msg: Message): FramePlan {
  const fields: Record<string, unknown> = {};
  const tails: TailArray[] = [];
  const descriptors: TailDescriptor[] = [];
  for (const [name, value] of Object.entries(msg)) {
    // Absent optional fields stay absent on the wire, as they would in JSON.
    if (value === undefined) continue;
    const dtype = dtypeOf(value);
    if (dtype === undefined) {
      fields[name] = value;
      continue;
    }
    if (dtype === null) {
      const kind = (value as object).constructor?.name ?? 'view';
      throw new ProtocolError('internal', `cannot encode ${msg.type}.${name}: a ${kind} is not a Float32Array, Int32Array, Uint16Array, Uint8Array or Int8Array`);
    }
    if (dtypeBytes(dtype) > 1 && !HOST_IS_LITTLE_ENDIAN) throw bigEndianHost();
    tails.push(value as TailArray);
    descriptors.push([name, dtype, (value as TailArray).length]);
  }
  const header = packr.pack({ fields, tails: descriptors });
  let byteLength = align4(HEADER_LENGTH_BYTES + header.length);
  for (const tail of tails) byteLength += align4(tail.byteLength);
  return { header, tails, byteLength };
}

/** Writes a planned frame at the start of `target`, padding included, so `target` may be reused. */
export function writeFrame(plan: FramePlan, target: Uint8Array): void {
  const { header, tails } = plan;
  new DataView(target.buffer, target.byteOffset, HEADER_LENGTH_BYTES).setUint32(0, header.length, true);
  target.set(header, HEADER_LENGTH_BYTES);
  let offset = zeroPad(target, HEADER_LENGTH_BYTES + header.length);
  for (const tail of tails) {
    target.set(new Uint8Array(tail.buffer, tail.byteOffset, tail.byteLength), offset);
    offset = zeroPad(target, offset + tail.byteLength);
  }
}

function zeroPad(target: Uint8Array, end: number): number {
  const padded = align4(end);
  target.fill(0, end, padded);
  return padded;
}

/** Encodes one message into a new frame of exactly the right size. */
export function encodeMessage(msg: Message): Uint8Array {
  const plan = planFrame(msg);
  const frame = new Uint8Array(plan.byteLength);
  writeFrame(plan, frame);
  return frame;
}

/**
 * Decodes a frame into its fields plus one typed array per tail, without validating what the
 * fields mean (validate.ts does that). Tails are views into `frame` when its byteOffset keeps
 * them 4-byte aligned, copies otherwise; so the result shares memory with `frame` and the
 * caller must not reuse `frame` while the message is in use.
 */
export function decodeFrame(frame: Uint8Array): Record<string, unknown> {
  const headerEnd = headerEndOf(frame);
  const { fields, tails } = readHeader(frame.subarray(HEADER_LENGTH_BYTES, headerEnd));

  const message: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(fields)) {
    // One representation per field: binary data in the header would bypass the tail checks.
    if (ArrayBuffer.isView(value)) throw malformed(`field ${quote(name)} is binary inside the header; typed arrays travel as tails`);
    define(message, name, value);
  }

  let offset = checkPadding(frame, headerEnd);
  // A view needs its absolute byte offset aligned; tail offsets are multiples of 4 from the
  // frame start, so the frame's own offset decides. One-byte tails (u8, i8) never need alignment.
  const aligned = frame.byteOffset % 4 === 0;
  for (let i = 0; i < tails.length; i++) {
    const [name, dtype, count] = readDescriptor(tails[i], i, message);
    const size = dtypeBytes(dtype);
    const left = Math.max(0, frame.length - offset);
    if (count > left / size) {
      throw malformed(`tail ${quote(name)} (${count} x ${dtype}) needs ${count * size} bytes at offset ${offset}, but the ${frame.length}-byte frame has ${left} left`);
    }
    if (size > 1 && !HOST_IS_LITTLE_ENDIAN) throw bigEndianHost();
    const start = frame.byteOffset + offset;
    const byteLength = count * size;
    const value =
      size === 1 || aligned
        ? createTail(dtype, frame.buffer, start, count)
        : copyTail(dtype, frame.subarray(offset, offset + byteLength), count);
    define(message, name, value);
    offset = checkPadding(frame, offset + byteLength);
  }
  if (offset !== frame.length) {
    throw malformed(`header and tails end at byte ${offset}, but the frame is ${frame.length} bytes`);
  }
  return message;
}

/**
 * The `type` field a frame's header names, without reading its tails or validating anything
 * (undefined when the header does not decode or names none): for a receiver that decides by
 * type when, or against what, to parse the frame.
 */
export function frameType(frame: Uint8Array): unknown {
  try {
    const { fields } = readHeader(frame.subarray(HEADER_LENGTH_BYTES, headerEndOf(frame)));
    return Object.hasOwn(fields, 'type') ? fields.type : undefined;
  } catch {
    return undefined;
  }
}

/** Where a frame's header ends (its 4-byte length, then the header), checked against the frame. */
function headerEndOf(frame: Uint8Array): number {
  if (!(frame instanceof Uint8Array)) throw malformed('a frame must be binary (a Uint8Array)');
  if (frame.length < HEADER_LENGTH_BYTES) {
    throw malformed(`frame is ${frame.length} bytes, too short for its 4-byte header length`);
  }
  const headerLength = new DataView(frame.buffer, frame.byteOffset, HEADER_LENGTH_BYTES).getUint32(0, true);
  const headerEnd = HEADER_LENGTH_BYTES + headerLength;
  if (headerEnd > frame.length) {
    throw malformed(`header length ${headerLength} runs past the end of the ${frame.length}-byte frame`);
  }
  return headerEnd;
}

function readHeader(bytes: Uint8Array): { fields: Record<string, unknown>; tails: unknown[] } {
  let header: unknown;
  try {
    header = unpackr.unpack(bytes);
  } catch (error) {
    throw malformed(`header is not valid msgpack: ${(error as Error).message}`.slice(0, 200), error);
  }
  if (!isMap(header)) throw malformed('header is not a map');
  const { fields, tails } = header;
  if (!isMap(fields)) throw malformed('header.fields is not a map');
  if (!Array.isArray(tails)) throw malformed('header.tails is not a list');
  if (tails.length > MAX_TAILS) throw malformed(`header lists ${tails.length} tails; at most ${MAX_TAILS} are allowed`);
  return { fields, tails };
}

function readDescriptor(descriptor: unknown, index: number, message: Record<string, unknown>): TailDescriptor {
  if (!Array.isArray(descriptor) || descriptor.length !== 3) {
    throw malformed(`tail descriptor ${index} is not [name, dtype, count]`);
  }
  const [name, dtype, count] = descriptor as unknown[];
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_TAIL_NAME_LENGTH) {
    throw malformed(`tail descriptor ${index} has no usable name (a string of 1..${MAX_TAIL_NAME_LENGTH} characters)`);
  }
  if (Object.hasOwn(message, name)) throw malformed(`tail ${quote(name)} repeats a field or an earlier tail`);
  if (!isDtype(dtype)) throw malformed(`tail ${quote(name)} has unknown dtype ${quote(dtype)} (expected f32, i32, u16, u8 or i8)`);
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
    throw malformed(`tail ${quote(name)} has element count ${quote(count)}, not a non-negative integer`);
  }
  return [name, dtype, count];
}

/** Checks the zero padding after `end` that exists within the frame; returns the aligned offset. */
function checkPadding(frame: Uint8Array, end: number): number {
  const padded = align4(end);
  for (let i = end; i < Math.min(padded, frame.length); i++) {
    if (frame[i] !== 0) throw malformed(`padding byte at offset ${i} is ${frame[i]}, not 0`);
  }
  return padded;
}

function copyTail(dtype: Dtype, bytes: Uint8Array, count: number): TailArray {
  const copy = createTail(dtype, new ArrayBuffer(bytes.length), 0, count);
  new Uint8Array(copy.buffer).set(bytes);
  return copy;
}

/** Plain assignment to a wire-chosen key like `__proto__` would set the prototype instead. */
function define(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function isMap(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function malformed(message: string, cause?: unknown): ProtocolError {
  return new ProtocolError('malformed', message, cause === undefined ? undefined : { cause });
}

function bigEndianHost(): ProtocolError {
  return new ProtocolError('internal', 'Chorus frames carry little-endian arrays; this host is big-endian');
}
