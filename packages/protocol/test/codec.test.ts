import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pack } from 'msgpackr';
import fc from 'fast-check';
import { ProtocolError, decodeFrame, encodeMessage, frameType, type Message } from '../src/index.js';
import { align4 } from '../src/codec.js';
import { floats, sampleMessages } from './fixtures.js';

const TAIL_CLASSES = [Float32Array, Int32Array, Uint8Array];
const isTail = (value: unknown): value is Float32Array | Int32Array | Uint8Array =>
  TAIL_CLASSES.some((ctor) => value instanceof ctor);

function bytesOf(array: ArrayBufferView): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/** Typed arrays equal class, length and every bit; everything else deep-equal. */
function assertSameMessage(actual: Record<string, unknown>, expected: Message): void {
  const expectedFields = Object.entries(expected).filter(([, value]) => value !== undefined);
  assert.deepEqual(Object.keys(actual).sort(), expectedFields.map(([key]) => key).sort());
  for (const [key, value] of expectedFields) {
    if (isTail(value)) {
      const got = actual[key];
      assert.ok(got instanceof value.constructor, `${key} is a ${value.constructor.name}`);
      assert.deepEqual(bytesOf(got as ArrayBufferView), bytesOf(value), `${key} bit-exact`);
    } else {
      assert.deepStrictEqual(actual[key], value, key);
    }
  }
}

/** The frame copied to `shift` bytes past a 4-aligned start of a larger buffer. */
function shifted(frame: Uint8Array, shift: number): Uint8Array {
  const backing = new Uint8Array(frame.length + 8);
  backing.set(frame, shift);
  return backing.subarray(shift, shift + frame.length);
}

/** Builds a frame by hand, for shapes encodeMessage would never produce. */
function rawFrame(header: unknown, body: Uint8Array = new Uint8Array(0), headerBytes: Uint8Array = pack(header)): Uint8Array {
  const start = align4(4 + headerBytes.length);
  const frame = new Uint8Array(start + body.length);
  new DataView(frame.buffer).setUint32(0, headerBytes.length, true);
  frame.set(headerBytes, 4);
  frame.set(body, start);
  return frame;
}

function assertMalformed(frame: Uint8Array, pattern: RegExp): void {
  assert.throws(
    () => decodeFrame(frame),
    (error: unknown) => {
      assert.ok(error instanceof ProtocolError, `threw ${String(error)}`);
      assert.equal(error.code, 'malformed');
      assert.match(error.message, pattern);
      return true;
    },
  );
}

describe('round trip', () => {
  for (const [type, message] of Object.entries(sampleMessages())) {
    test(`${type}: every field back, typed arrays bit-exact and viewing the frame`, () => {
      const frame = encodeMessage(message);
      const decoded = decodeFrame(frame);
      assertSameMessage(decoded, message);
      for (const value of Object.values(decoded)) {
        if (isTail(value)) assert.equal(value.buffer, frame.buffer, 'a view, not a copy');
      }
    });
  }

  test('bit patterns survive that a float round trip would lose (NaN payloads, -0)', () => {
    const gradient = new Float32Array(4);
    new Uint32Array(gradient.buffer).set([0x7fc00001, 0xffbadbad, 0x80000000, 0x00000001]);
    const message = { ...sampleMessages().gradient, gradient };
    const decoded = decodeFrame(encodeMessage(message));
    assert.deepEqual(new Uint32Array((decoded.gradient as Float32Array).slice().buffer), new Uint32Array(gradient.buffer));
  });

  test('typed arrays that are views into larger buffers encode only their own bytes', () => {
    const big = floats(100);
    const message = { ...sampleMessages().update, params: big.subarray(3, 13) };
    const decoded = decodeFrame(encodeMessage(message));
    assert.deepEqual(decoded.params, big.slice(3, 13));
  });

  test('absent optional fields stay absent', () => {
    const { workerId: _, ...hello } = sampleMessages().hello;
    const decoded = decodeFrame(encodeMessage({ ...hello, workerId: undefined }));
    assert.ok(!('workerId' in decoded));
  });

  test('empty typed arrays round-trip', () => {
    const message = { ...sampleMessages().update, params: new Float32Array(0), bnStats: new Float32Array(0) };
    assertSameMessage(decodeFrame(encodeMessage(message)), message);
  });
});

describe('frame layout', () => {
  test('LE header length, 4-aligned zero-padded tails in field order, length a multiple of 4', () => {
    const message = sampleMessages().assign;
    const frame = encodeMessage(message);
    const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
    const headerLength = view.getUint32(0, true);
    let offset = align4(4 + headerLength);
    assert.ok(frame.subarray(4 + headerLength, offset).every((b) => b === 0));
    for (const array of [message.indices, message.labels, message.pixels]) {
      assert.equal(offset % 4, 0);
      assert.deepEqual(frame.subarray(offset, offset + array.byteLength), bytesOf(array));
      assert.ok(frame.subarray(offset + array.byteLength, align4(offset + array.byteLength)).every((b) => b === 0));
      offset = align4(offset + array.byteLength);
    }
    assert.equal(offset, frame.length);
    assert.equal(frame.length % 4, 0);
  });

  test('an odd-length u8 tail is padded so the next tail stays aligned', () => {
    const message = { ...sampleMessages().assign, indices: Int32Array.from([1]), labels: Uint8Array.from([5]), pixels: new Uint8Array(3072) };
    const frame = encodeMessage(message);
    const decoded = decodeFrame(frame);
    assert.equal((decoded.pixels as Uint8Array).byteOffset % 4, 0);
    assert.equal(frame.length % 4, 0);
  });

  test('the header is plain msgpack: { fields, tails: [[name, dtype, count]] }', async () => {
    const { unpack } = await import('msgpackr');
    const frame = encodeMessage(sampleMessages().gradient);
    const headerLength = new DataView(frame.buffer).getUint32(0, true);
    const header = unpack(frame.subarray(4, 4 + headerLength));
    assert.deepEqual(header.tails, [
      ['gradient', 'f32', 10],
      ['bnMoments', 'f32', 4],
    ]);
    assert.equal(header.fields.type, 'gradient');
    assert.equal(header.fields.lossSum, 6.907755278982137);
  });

  test('encoding refuses typed arrays the format cannot carry', () => {
    const bad = { ...sampleMessages().update, params: new Float64Array(3) } as unknown as Message;
    assert.throws(() => encodeMessage(bad), { name: 'ProtocolError', code: 'internal', message: /update\.params.*Float64Array/ });
  });
});

describe('unaligned frames', () => {
  for (const shift of [1, 2, 3]) {
    test(`byteOffset ${shift}: decoded correctly, f32/i32 copied, u8 still views`, () => {
      for (const message of Object.values(sampleMessages())) {
        const frame = shifted(encodeMessage(message), shift);
        assert.equal(frame.byteOffset % 4, shift);
        const decoded = decodeFrame(frame);
        assertSameMessage(decoded, message);
        for (const value of Object.values(decoded)) {
          if (!isTail(value)) continue;
          if (value instanceof Uint8Array) assert.equal(value.buffer, frame.buffer);
          else assert.notEqual(value.buffer, frame.buffer);
        }
      }
    });
  }

  test("Node Buffers at arbitrary offsets in a shared ArrayBuffer (as ws hands them over)", () => {
    const message = sampleMessages().gradient;
    const encoded = encodeMessage(message);
    const seen = new Set<boolean>();
    for (let pad = 0; pad < 8; pad++) {
      // Buffer.concat allocates from Node's pool; the message sits `pad` bytes into it.
      const buffer = Buffer.concat([Buffer.alloc(pad, 0xee), Buffer.from(encoded), Buffer.alloc(5, 0xee)]).subarray(pad, pad + encoded.length);
      const decoded = decodeFrame(buffer);
      assertSameMessage(decoded, message);
      const gradient = decoded.gradient as Float32Array;
      assert.equal(gradient.buffer === buffer.buffer, buffer.byteOffset % 4 === 0);
      seen.add(buffer.byteOffset % 4 === 0);
    }
    assert.equal(seen.size, 2, 'both aligned and unaligned Buffers were decoded');
  });
});

describe('malformed frames', () => {
  const good = encodeMessage(sampleMessages().gradient);

  test('shorter than the header length', () => {
    for (let n = 0; n < 4; n++) assertMalformed(new Uint8Array(n), /too short/);
  });

  test('not binary', () => {
    assertMalformed('hello' as unknown as Uint8Array, /binary/);
  });

  test('header length past the end', () => {
    const frame = good.slice();
    new DataView(frame.buffer).setUint32(0, frame.length, true);
    assertMalformed(frame, /header length \d+ runs past the end/);
    new DataView(frame.buffer).setUint32(0, 0xffffffff, true);
    assertMalformed(frame, /runs past the end/);
  });

  test('msgpack garbage', () => {
    assertMalformed(rawFrame(null, undefined, Uint8Array.from([0xdc, 0xff, 0xff, 0x01])), /not valid msgpack/);
    assertMalformed(rawFrame(null, undefined, new Uint8Array(0)), /not valid msgpack/);
    // A complete value followed by stray bytes.
    assertMalformed(rawFrame(null, undefined, Uint8Array.from([0x80, 0x01, 0x02])), /not valid msgpack/);
  });

  test('header not a map', () => {
    assertMalformed(rawFrame([1, 2]), /header is not a map/);
    assertMalformed(rawFrame(42), /header is not a map/);
    assertMalformed(rawFrame(null, undefined, Uint8Array.from([0xc1])), /header is not a map/);
    assertMalformed(rawFrame({ fields: [], tails: [] }), /header\.fields is not a map/);
    assertMalformed(rawFrame({ fields: {}, tails: {} }), /header\.tails is not a list/);
  });

  test('bad tail descriptors', () => {
    const body = new Uint8Array(8);
    assertMalformed(rawFrame({ fields: {}, tails: [['x', 'f32']] }, body), /descriptor 0 is not \[name, dtype, count\]/);
    assertMalformed(rawFrame({ fields: {}, tails: [[7, 'f32', 2]] }, body), /descriptor 0 has no usable name/);
    assertMalformed(rawFrame({ fields: {}, tails: [['x'.repeat(65), 'f32', 2]] }, body), /no usable name/);
    assertMalformed(rawFrame({ fields: {}, tails: [['x', 'f64', 1]] }, body), /unknown dtype "f64"/);
    assertMalformed(rawFrame({ fields: {}, tails: [['x', 'f32', -1]] }, body), /element count -1/);
    assertMalformed(rawFrame({ fields: {}, tails: [['x', 'f32', 1.5]] }, body), /element count 1.5/);
    assertMalformed(rawFrame({ fields: {}, tails: [['x', 'u8', 8], ['x', 'u8', 0]] }, body), /"x" repeats/);
    assertMalformed(rawFrame({ fields: { x: 1 }, tails: [['x', 'u8', 8]] }, body), /"x" repeats/);
    const many = Array.from({ length: 17 }, (_, i) => [`t${i}`, 'u8', 0]);
    assertMalformed(rawFrame({ fields: {}, tails: many }), /17 tails; at most 16/);
  });

  test('tails inconsistent with the frame length', () => {
    const body = new Uint8Array(8);
    assertMalformed(rawFrame({ fields: {}, tails: [['x', 'f32', 3]] }, body), /needs 12 bytes at offset \d+, but the \d+-byte frame has 8 left/);
    assertMalformed(rawFrame({ fields: {}, tails: [['x', 'f32', 2 ** 50]] }, body), /needs \d+ bytes/);
    assertMalformed(rawFrame({ fields: {}, tails: [['x', 'f32', 1]] }, body), /end at byte \d+, but the frame is \d+ bytes/);
    // Truncated in the last tail, and extended past it.
    assertMalformed(good.subarray(0, good.length - 4), /needs 16 bytes/);
    const longer = new Uint8Array(good.length + 4);
    longer.set(good);
    assertMalformed(longer, /but the frame is/);
  });

  test('non-zero padding', () => {
    const frame = rawFrame({ fields: {}, tails: [['x', 'u8', 3]] }, Uint8Array.from([1, 2, 3, 9]));
    assertMalformed(frame, /padding byte at offset \d+ is 9/);
  });

  test('binary values inside the header are refused', () => {
    assertMalformed(rawFrame({ fields: { labels: new Uint8Array(3) }, tails: [] }), /"labels" is binary inside the header/);
  });

  test('a tail named __proto__ is an ordinary field, not a prototype', () => {
    const decoded = decodeFrame(rawFrame({ fields: {}, tails: [['__proto__', 'u8', 4]] }, Uint8Array.from([1, 2, 3, 4])));
    assert.equal(Object.getPrototypeOf(decoded), Object.prototype);
    assert.deepEqual(Object.getOwnPropertyDescriptor(decoded, '__proto__')?.value, Uint8Array.from([1, 2, 3, 4]));
  });
});

test('frameType names the type of every message, and for any other bytes returns undefined rather than throw', () => {
  for (const message of Object.values(sampleMessages())) {
    const frame = encodeMessage(message as Message);
    assert.equal(frameType(frame), (message as Message).type);
    // The header alone decides: a frame cut short after it still names its type.
    const headerEnd = 4 + new DataView(frame.buffer, frame.byteOffset, 4).getUint32(0, true);
    assert.equal(frameType(frame.subarray(0, headerEnd)), (message as Message).type);
    assert.equal(frameType(frame.subarray(0, headerEnd - 1)), undefined);
  }
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
      const type = frameType(bytes);
      assert.ok(type === undefined || type === (decodeFrameOrNull(bytes)?.type ?? type));
    }),
  );
});

function decodeFrameOrNull(bytes: Uint8Array): Record<string, unknown> | null {
  try {
    return decodeFrame(bytes);
  } catch {
    return null;
  }
}
