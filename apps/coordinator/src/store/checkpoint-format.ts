import { endianness } from 'node:os';
import { createHash } from 'node:crypto';
import type { OptimizerState } from '@chorus/train/core';

/** Everything needed to resume a run exactly where it stopped. */
export interface CheckpointState {
  /** Completed steps, which is also the weights version. */
  step: number;
  params: Float32Array;
  bnStats: Float32Array;
  optimizer: OptimizerState;
  /** The run's configuration (JSON-able), so that --resume can refuse a mismatched run. */
  config: Record<string, unknown>;
  /** Optional JSON-able run history (metrics so far). */
  history?: unknown;
  /** The public weights the workers hold, in fp16 and int8 runs (fp32 runs have none). */
  publicParams?: Float32Array;
  /** Low-rank runs: the fixed factors of the step at `step` (low-rank.ts). */
  lowRankFactors?: Float32Array;
}

/**
 * File format (all integers little-endian):
 *
 *   offset 0   8 bytes  magic "CHORUSCK"
 *   offset 8   u32      format version: 1, 2 when the file holds public weights, 3 when it
 *                       holds low-rank factors (with or without public weights)
 *   offset 12  u32      header length H in bytes (a multiple of 8; JSON padded with spaces)
 *   offset 16  H bytes  UTF-8 JSON header (see `Header`)
 *   16 + H     the arrays as raw little-endian float32, in order: params, bnStats, slots...,
 *              then publicParams (when the header lists them), then (version 3) lowRankFactors
 *              (the data start is 8-byte aligned, so every array is 4-byte aligned)
 *   end - 32   SHA-256 of every byte before it
 */
export const CHECKPOINT_MAGIC = 'CHORUSCK';
export const CHECKPOINT_VERSION = 1;
/**
 * Version 2 adds the public weights of a compressed-codec run. Files without them are still
 * written as version 1, byte for byte as before, so fp32 checkpoints stay readable by older
 * builds; an older build refuses a version 2 file by its version rather than misreading it.
 */
export const CHECKPOINT_VERSION_WITH_PUBLIC = 2;
/** Version 3 adds a low-rank run's factors; other runs keep writing 1 and 2. */
export const CHECKPOINT_VERSION_WITH_FACTORS = 3;
const PREAMBLE = 16;
const DIGEST = 32;

interface Header {
  step: number;
  savedAt: string;
  config: Record<string, unknown>;
  history?: unknown;
  optimizer: { kind: OptimizerState['kind']; updates: number };
  /** Element counts of the arrays that follow, in file order. */
  arrays: { params: number; bnStats: number; slots: number[]; publicParams?: number; lowRankFactors?: number };
}

/** A checkpoint file that cannot be used: wrong magic, truncated, checksum mismatch... */
export class CheckpointFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointFormatError';
  }
}

const littleEndian = endianness() === 'LE';

/** The raw little-endian bytes of a Float32Array (a view on it where the platform is little-endian). */
function float32Bytes(array: Float32Array): Uint8Array {
  if (littleEndian) return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  const bytes = new Uint8Array(array.byteLength);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < array.length; i++) view.setFloat32(4 * i, array[i], true);
  return bytes;
}

/** A fresh Float32Array from raw little-endian bytes; bit-exact (no float conversion on little-endian). */
function float32From(bytes: Uint8Array, offset: number, count: number): Float32Array {
  const out = new Float32Array(count);
  const src = bytes.subarray(offset, offset + 4 * count);
  if (littleEndian) {
    new Uint8Array(out.buffer).set(src);
  } else {
    const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
    for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
  }
  return out;
}

function validateState(state: CheckpointState): void {
  if (!Number.isSafeInteger(state.step) || state.step < 0) {
    throw new Error(`checkpoint: step must be a non-negative integer, got ${state.step}`);
  }
  const arrays: [string, unknown][] = [
    ['params', state.params],
    ['bnStats', state.bnStats],
    ...(state.publicParams === undefined ? [] : [['publicParams', state.publicParams] as [string, unknown]]),
    ...(state.lowRankFactors === undefined ? [] : [['lowRankFactors', state.lowRankFactors] as [string, unknown]]),
    ...state.optimizer.slots.map((s, i): [string, unknown] => [`optimizer.slots[${i}]`, s]),
  ];
  for (const [name, value] of arrays) {
    if (!(value instanceof Float32Array)) throw new Error(`checkpoint: ${name} must be a Float32Array`);
  }
  if (state.optimizer.kind !== 'sgd' && state.optimizer.kind !== 'adam') {
    throw new Error(`checkpoint: unknown optimizer kind '${String(state.optimizer.kind)}'`);
  }
  if (!Number.isSafeInteger(state.optimizer.updates) || state.optimizer.updates < 0) {
    throw new Error(`checkpoint: optimizer.updates must be a non-negative integer, got ${state.optimizer.updates}`);
  }
}

/** The preamble and padded JSON header of a checkpoint. */
function encodeHead(state: CheckpointState): Buffer {
  const header: Header = {
    step: state.step,
    savedAt: new Date().toISOString(),
    config: state.config,
    ...(state.history === undefined ? {} : { history: state.history }),
    optimizer: { kind: state.optimizer.kind, updates: state.optimizer.updates },
    arrays: {
      params: state.params.length,
      bnStats: state.bnStats.length,
      slots: state.optimizer.slots.map((s) => s.length),
      ...(state.publicParams === undefined ? {} : { publicParams: state.publicParams.length }),
      ...(state.lowRankFactors === undefined ? {} : { lowRankFactors: state.lowRankFactors.length }),
    },
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const head = Buffer.alloc(PREAMBLE + padded, 0x20);
  head.write(CHECKPOINT_MAGIC, 0, 'latin1');
  head.writeUInt32LE(state.lowRankFactors !== undefined ? CHECKPOINT_VERSION_WITH_FACTORS : state.publicParams === undefined ? CHECKPOINT_VERSION : CHECKPOINT_VERSION_WITH_PUBLIC, 8);
  head.writeUInt32LE(padded, 12);
  json.copy(head, PREAMBLE);
  return head;
}

/** Decodes and verifies a whole checkpoint file; throws CheckpointFormatError when it is unusable. */
export function decodeCheckpoint(bytes: Uint8Array): CheckpointState {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < PREAMBLE + DIGEST) throw new CheckpointFormatError(`file too short (${buf.length} bytes)`);
  if (buf.toString('latin1', 0, 8) !== CHECKPOINT_MAGIC) throw new CheckpointFormatError('not a Chorus checkpoint (bad magic)');
  const version = buf.readUInt32LE(8);
  if (version !== CHECKPOINT_VERSION && version !== CHECKPOINT_VERSION_WITH_PUBLIC && version !== CHECKPOINT_VERSION_WITH_FACTORS) {
    throw new CheckpointFormatError(`unsupported checkpoint format version ${version} (this build reads ${CHECKPOINT_VERSION}, ${CHECKPOINT_VERSION_WITH_PUBLIC} and ${CHECKPOINT_VERSION_WITH_FACTORS})`);
  }
  const body = buf.length - DIGEST;
  const digest = createHash('sha256').update(buf.subarray(0, body)).digest();
  if (!digest.equals(buf.subarray(body))) {
    throw new CheckpointFormatError('checksum mismatch (truncated or corrupted file)');
  }
  const headerLength = buf.readUInt32LE(12);
  if (headerLength % 8 !== 0 || PREAMBLE + headerLength > body) throw new CheckpointFormatError(`bad header length ${headerLength}`);
  let header: Header;
  try {
    header = JSON.parse(buf.toString('utf8', PREAMBLE, PREAMBLE + headerLength)) as Header;
  } catch (err) {
    throw new CheckpointFormatError(`unreadable header: ${(err as Error).message}`);
  }
  const count = (n: unknown, what: string): number => {
    if (!Number.isSafeInteger(n) || (n as number) < 0) throw new CheckpointFormatError(`bad length for ${what}`);
    return n as number;
  };
  if (typeof header !== 'object' || header === null || typeof header.arrays !== 'object' || header.arrays === null) {
    throw new CheckpointFormatError('malformed header');
  }
  if (!Number.isSafeInteger(header.step) || header.step < 0) throw new CheckpointFormatError('malformed header: step');
  const kind = header.optimizer?.kind;
  if (kind !== 'sgd' && kind !== 'adam') throw new CheckpointFormatError('malformed header: optimizer kind');
  if (typeof header.config !== 'object' || header.config === null) throw new CheckpointFormatError('malformed header: config');
  if (!Array.isArray(header.arrays.slots)) throw new CheckpointFormatError('malformed header: slots');
  const withFactors = version === CHECKPOINT_VERSION_WITH_FACTORS;
  // Version 3 may hold public weights or not (fp32 low-rank runs have none); 1 and 2 say by their number.
  const withPublic = withFactors ? 'publicParams' in header.arrays : version === CHECKPOINT_VERSION_WITH_PUBLIC;
  if (withPublic !== ('publicParams' in header.arrays)) {
    throw new CheckpointFormatError(`malformed header: format version ${version} ${withPublic ? 'needs' : 'has no room for'} public weights`);
  }
  if (withFactors !== ('lowRankFactors' in header.arrays)) {
    throw new CheckpointFormatError(`malformed header: format version ${version} ${withFactors ? 'needs' : 'has no room for'} low-rank factors`);
  }
  const lengths = [
    count(header.arrays.params, 'params'),
    count(header.arrays.bnStats, 'bnStats'),
    ...header.arrays.slots.map((n, i) => count(n, `slot ${i}`)),
    ...(withPublic ? [count(header.arrays.publicParams, 'publicParams')] : []),
    ...(withFactors ? [count(header.arrays.lowRankFactors, 'lowRankFactors')] : []),
  ];
  const dataStart = PREAMBLE + headerLength;
  const expected = dataStart + 4 * lengths.reduce((a, b) => a + b, 0);
  if (expected !== body) throw new CheckpointFormatError(`size mismatch: header describes ${expected + DIGEST} bytes, file has ${buf.length}`);
  let at = dataStart;
  const arrays = lengths.map((n) => {
    const a = float32From(buf, at, n);
    at += 4 * n;
    return a;
  });
  const state: CheckpointState = {
    step: header.step,
    params: arrays[0],
    bnStats: arrays[1],
    optimizer: { kind, updates: count(header.optimizer.updates, 'optimizer updates'), slots: arrays.slice(2, 2 + header.arrays.slots.length) },
    config: header.config,
  };
  const slotsEnd = 2 + header.arrays.slots.length;
  if (withPublic) state.publicParams = arrays[slotsEnd];
  if (withFactors) state.lowRankFactors = arrays[slotsEnd + (withPublic ? 1 : 0)];
  if ('history' in header) state.history = header.history;
  return state;
}

/** The file's bytes before its digest, in order: the head, then every array's raw bytes. */
export function checkpointChunks(state: CheckpointState): Uint8Array[] {
  validateState(state);
  const publicParams = state.publicParams === undefined ? [] : [state.publicParams];
  const factors = state.lowRankFactors === undefined ? [] : [state.lowRankFactors];
  return [encodeHead(state), ...[state.params, state.bnStats, ...state.optimizer.slots, ...publicParams, ...factors].map(float32Bytes)];
}
