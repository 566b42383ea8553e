import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pack } from 'msgpackr';
import {
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  ProtocolError,
  encodeMessage,
  parseMessage,
  validateMessage,
  type ErrorCode,
  type ValidationLimits,
} from '../src/index.js';
import { LIMITS, floats, sampleMessages } from './fixtures.js';

type Loose = Record<string, unknown>;

/** A sample message of `type` with `changes` applied; `undefined` deletes a field. */
function variant(type: keyof ReturnType<typeof sampleMessages>, changes: Loose): Loose {
  const message: Loose = { ...sampleMessages()[type] };
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined) delete message[key];
    else message[key] = value;
  }
  return message;
}

function assertRefused(message: unknown, code: ErrorCode, pattern: RegExp, limits?: ValidationLimits): void {
  assert.throws(
    () => validateMessage(message, limits),
    (error: unknown) => {
      assert.ok(error instanceof ProtocolError, `threw ${String(error)}`);
      assert.equal(error.code, code, error.message);
      assert.match(error.message, pattern);
      return true;
    },
  );
}

describe('valid messages', () => {
  for (const [type, message] of Object.entries(sampleMessages())) {
    test(`${type} parses from a frame, with and without limits`, () => {
      const frame = encodeMessage(message);
      assert.deepStrictEqual(parseMessage(frame), message);
      assert.deepStrictEqual(parseMessage(frame, LIMITS), message);
    });
  }

  test('typed arrays come through as views of the frame, not copies', () => {
    const frame = encodeMessage(sampleMessages().gradient);
    const message = parseMessage(frame, LIMITS);
    assert.ok(message.type === 'gradient' && message.gradient.buffer === frame.buffer);
  });

  test('unknown extra fields are dropped, at the top and nested', () => {
    const hello = sampleMessages().hello;
    const frame = encodeMessage({ ...hello, admin: true, runtime: { ...hello.runtime, gpuCount: 8 } } as typeof hello);
    const parsed = parseMessage(frame);
    assert.deepStrictEqual(parsed, hello);
    assert.ok(!('admin' in parsed));
  });

  test('optional fields may be absent', () => {
    assert.doesNotThrow(() => validateMessage(variant('hello', { workerId: undefined })));
    assert.doesNotThrow(() => validateMessage(variant('heartbeat', { hidden: undefined })));
  });

  test('a negative augmentSeed (no augmentation) is allowed, a seed beyond uint32 is not', () => {
    assert.doesNotThrow(() => validateMessage(variant('assign', { augmentSeed: -1 })));
    assertRefused(variant('assign', { augmentSeed: 2 ** 32 }), 'malformed', /assign\.augmentSeed/);
  });

  test('welcome checks its arrays against its own run, not the receiver limits', () => {
    // A worker that reconnects to a different run still holds the old run's limits.
    assert.doesNotThrow(() => validateMessage(sampleMessages().welcome, { paramCount: 99, bnStatCount: 99 }));
  });
});

describe('type and version', () => {
  test('unknown type names the type', () => {
    assertRefused({ type: 'launch', v: PROTOCOL_VERSION }, 'unknown-type', /unknown message type "launch"/);
    assertRefused({ type: 'x'.repeat(10_000), v: PROTOCOL_VERSION }, 'unknown-type', /^unknown message type "x{64}\.\.\."$/);
  });

  test('unknown type is reported before the version', () => {
    assertRefused({ type: 'launch', v: PROTOCOL_VERSION + 1 }, 'unknown-type', /launch/);
  });

  test('missing or non-string type, or not a map at all', () => {
    assertRefused({ v: PROTOCOL_VERSION }, 'malformed', /no type/);
    assertRefused({ type: 3, v: PROTOCOL_VERSION }, 'malformed', /no type/);
    assertRefused([1, 2], 'malformed', /map of fields/);
    assertRefused(null, 'malformed', /map of fields/);
  });

  test('wrong version gives both versions', () => {
    const frame = encodeMessage({ ...sampleMessages().hello, v: 2 });
    assert.throws(() => parseMessage(frame), { code: 'bad-version', message: /hello speaks protocol version 2; this side speaks version 1/ });
    assertRefused(variant('hello', { v: undefined }), 'bad-version', /version undefined/);
    assertRefused(variant('hello', { v: '1' }), 'bad-version', /version "1"/);
  });
});

describe('field types', () => {
  test('a missing field is named', () => {
    assertRefused(variant('assign', { shardId: undefined }), 'malformed', /^invalid assign\.shardId: missing$/);
    assertRefused(variant('hello', { runtime: undefined }), 'malformed', /invalid hello\.runtime: missing/);
  });

  test('counts, ids, steps and versions are non-negative integers', () => {
    assertRefused(variant('assign', { step: -1 }), 'malformed', /assign\.step/);
    assertRefused(variant('assign', { version: 1.5 }), 'malformed', /assign\.version/);
    assertRefused(variant('evaluate', { evalId: '2' }), 'malformed', /evaluate\.evalId/);
    assertRefused(variant('gradient', { shardId: 2 ** 53 }), 'malformed', /gradient\.shardId/);
    assertRefused(variant('evalResult', { count: 0 }), 'malformed', /evalResult\.count/);
    assertRefused(variant('welcome', { version: 10n }), 'malformed', /welcome\.version/);
  });

  test('numbers are finite', () => {
    assertRefused(variant('gradient', { lossSum: NaN }), 'malformed', /gradient\.lossSum/);
    assertRefused(variant('gradient', { computeMs: Infinity }), 'malformed', /gradient\.computeMs/);
    assertRefused(variant('heartbeat', { time: -Infinity }), 'malformed', /heartbeat\.time/);
    assertRefused(variant('evalResult', { lossSum: -1 }), 'malformed', /evalResult\.lossSum/);
  });

  test('correct never exceeds count', () => {
    assertRefused(variant('gradient', { correct: 4 }), 'malformed', /gradient\.correct: 4 correct out of 3/);
    assertRefused(variant('evalResult', { correct: 3 }), 'malformed', /evalResult\.correct/);
  });

  test('booleans, enums and literals', () => {
    assertRefused(variant('heartbeat', { hidden: 1 }), 'malformed', /heartbeat\.hidden/);
    assertRefused(variant('error', { code: 'oops' }), 'malformed', /error\.code/);
    const welcome = sampleMessages().welcome;
    assertRefused({ ...welcome, run: { ...welcome.run, codec: 'bf16' } }, 'malformed', /welcome\.run\.codec/);
    assertRefused({ ...welcome, run: { ...welcome.run, heartbeatMs: 0 } }, 'malformed', /welcome\.run\.heartbeatMs/);
  });

  test('typed arrays must be exactly the declared class', () => {
    assertRefused(variant('gradient', { gradient: new Float64Array(10) }), 'malformed', /gradient\.gradient: expected a Float32Array/);
    assertRefused(variant('gradient', { gradient: Array.from(floats(10)) }), 'malformed', /expected a Float32Array/);
    assertRefused(variant('assign', { indices: Uint8Array.from([1, 2, 3]) }), 'malformed', /assign\.indices: expected a Int32Array/);
    assertRefused(variant('evaluate', { labels: new Uint8ClampedArray(2) }), 'malformed', /evaluate\.labels: expected a Uint8Array/);
  });

  test('a tail of the wrong dtype on the wire is refused', () => {
    // labels sent as i32 decode to an Int32Array, which validation refuses.
    const assign = sampleMessages().assign;
    const { labels, pixels, indices, ...fields } = assign;
    const header = pack({ fields, tails: [['indices', 'i32', 3], ['labels', 'i32', 3], ['pixels', 'u8', pixels.length]] });
    const start = (4 + header.length + 3) & ~3;
    const frame = new Uint8Array(start + 12 + 12 + pixels.length);
    new DataView(frame.buffer).setUint32(0, header.length, true);
    frame.set(header, 4);
    frame.set(new Uint8Array(indices.buffer), start);
    frame.set(new Uint8Array(Int32Array.from(labels).buffer), start + 12);
    frame.set(pixels, start + 24);
    assert.throws(() => parseMessage(frame), { code: 'malformed', message: /assign\.labels: expected a Uint8Array/ });
  });

  test('several problems: the first is reported and the rest counted', () => {
    assertRefused(variant('bye', { reason: 5, v: PROTOCOL_VERSION, extra: 1 }), 'malformed', /bye\.reason/);
    assertRefused(variant('evalResult', { count: -1, correct: -1 }), 'malformed', /evalResult\.count: .*\(and 1 more\)$/);
  });
});

describe('gradients', () => {
  test('a 1-element gradient when the model has 10 parameters', () => {
    assertRefused(variant('gradient', { gradient: new Float32Array(1) }), 'bad-gradient', /gradient\.gradient has 1 elements; expected 10/, LIMITS);
  });

  test('bnMoments of the wrong length', () => {
    assertRefused(variant('gradient', { bnMoments: new Float32Array(5) }), 'bad-gradient', /gradient\.bnMoments has 5 elements; expected 4/, LIMITS);
  });

  for (const bad of [NaN, Infinity, -Infinity]) {
    test(`${bad} in a gradient or in bnMoments`, () => {
      const gradient = floats(10);
      gradient[7] = bad;
      assertRefused(variant('gradient', { gradient }), 'bad-gradient', new RegExp(`gradient\\.gradient: element 7 of 10 is ${bad}`), LIMITS);
      const bnMoments = floats(4);
      bnMoments[0] = bad;
      assertRefused(variant('gradient', { bnMoments }), 'bad-gradient', /gradient\.bnMoments: element 0 of 4/);
      // The same through a frame, as the coordinator sees it.
      const frame = encodeMessage({ ...sampleMessages().gradient, gradient });
      assert.throws(() => parseMessage(frame, LIMITS), { code: 'bad-gradient' });
    });
  }

  test('count above the shard cap', () => {
    assertRefused(variant('gradient', { count: 9, correct: 0 }), 'bad-gradient', /gradient\.count has 9 examples; at most 8/, LIMITS);
  });
});

describe('weights', () => {
  test('update params and bnStats must match the run', () => {
    assertRefused(variant('update', { params: new Float32Array(11) }), 'malformed', /update\.params has 11 elements; expected 10/, LIMITS);
    assertRefused(variant('update', { bnStats: new Float32Array(3) }), 'malformed', /update\.bnStats has 3 elements; expected 4/, LIMITS);
  });

  test("an update's form must be the run's: full params under fp32, a delta under fp16 and int8", () => {
    // A float32 delta is the fp32 dtype, yet an fp32 worker holds no public weights to add it to.
    assertRefused(variant('update', { params: undefined, delta: floats(10) }), 'malformed', /update\.delta in an fp32 run, which updates by full params/, { ...LIMITS, codec: 'fp32' });
    assertRefused(variant('update', {}), 'malformed', /update\.params in an int8 run, which updates by delta/, { ...LIMITS, codec: 'int8' });
    assert.equal(validateMessage(variant('update', {}), { ...LIMITS, codec: 'fp32' }).type, 'update');
  });

  test('welcome params and bnStats must match its run description', () => {
    assertRefused(variant('welcome', { params: new Float32Array(9) }), 'malformed', /welcome\.params: 9 elements; run\.paramCount says 10/);
    assertRefused(variant('welcome', { bnStats: new Float32Array(9) }), 'malformed', /welcome\.bnStats: 9 elements; run\.bnStatCount says 4/);
  });

  test('NaN in weights is refused', () => {
    const params = floats(10);
    params[2] = NaN;
    assertRefused(variant('update', { params }), 'malformed', /update\.params: element 2 of 10 is NaN/);
    assertRefused(variant('welcome', { params }), 'malformed', /welcome\.params: element 2/);
  });

  test('run.spec must be plain JSON data', () => {
    const welcome = sampleMessages().welcome;
    const withSpec = (spec: unknown) => ({ ...welcome, run: { ...welcome.run, spec } });
    assertRefused(withSpec({ layers: [{ scale: NaN }] }), 'malformed', /welcome\.run\.spec: spec\.layers\[0\]\.scale is NaN/);
    assertRefused(withSpec({ at: new Date(0) }), 'malformed', /spec\.at is a Date/);
    assertRefused(withSpec({ big: 1n }), 'malformed', /spec\.big is a bigint/);
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    assertRefused(withSpec(deep), 'malformed', /nests deeper than 64/);
    assertRefused(withSpec(undefined), 'malformed', /welcome\.run\.spec/);
    assert.doesNotThrow(() => validateMessage(withSpec({ optional: undefined, list: [null, true, 'x', -0.5] })));
  });
});

describe('shards', () => {
  test('assign: one label per index', () => {
    assertRefused(variant('assign', { indices: Int32Array.from([1, 2]) }), 'malformed', /assign\.indices: 2 indices for 3 labels/);
  });

  test('assign and evaluate: 3072 pixel bytes per example', () => {
    assertRefused(variant('assign', { pixels: new Uint8Array(3072 * 2) }), 'malformed', /assign\.pixels: 6144 bytes for 3 examples; expected 9216/);
    assertRefused(variant('evaluate', { pixels: new Uint8Array(3072 * 2 + 1) }), 'malformed', /evaluate\.pixels/);
  });

  test('labels are CIFAR-10 classes 0..9', () => {
    assertRefused(variant('assign', { labels: Uint8Array.from([9, 10, 0]) }), 'malformed', /assign\.labels: label 1 is 10/);
    assertRefused(variant('evaluate', { labels: Uint8Array.from([255, 0]) }), 'malformed', /evaluate\.labels: label 0 is 255/);
  });

  test('indices are non-negative dataset indices', () => {
    assertRefused(variant('assign', { indices: Int32Array.from([0, -5, 1]) }), 'malformed', /assign\.indices: index 1 is -5/);
  });

  test('shards are not empty', () => {
    const empty = { indices: new Int32Array(0), labels: new Uint8Array(0), pixels: new Uint8Array(0) };
    assertRefused(variant('assign', empty), 'malformed', /assign\.labels: the shard has no examples/);
  });

  test('shards above maxShardExamples are too large', () => {
    const n = 9;
    const big = { indices: new Int32Array(n), labels: new Uint8Array(n), pixels: new Uint8Array(3072 * n) };
    assertRefused(variant('assign', big), 'too-large', /assign shard has 9 examples; at most 8/, LIMITS);
    assertRefused(variant('evaluate', { labels: big.labels, pixels: big.pixels }), 'too-large', /evaluate shard/, LIMITS);
    assertRefused(variant('evalResult', { count: 9 }), 'malformed', /evalResult\.count has 9/, LIMITS);
  });
});

describe('hello', () => {
  const runtime = sampleMessages().hello.runtime;
  const withRuntime = (changes: Loose) => variant('hello', { runtime: { ...runtime, ...changes } });

  test('token is at most 256 characters', () => {
    assert.doesNotThrow(() => validateMessage(variant('hello', { token: 't'.repeat(256) })));
    assertRefused(variant('hello', { token: 't'.repeat(257) }), 'malformed', /hello\.token: Too big/);
    assertRefused(variant('hello', { token: 42 }), 'malformed', /hello\.token/);
  });

  test('runtime fields are sane', () => {
    assertRefused(withRuntime({ kind: 'deno' }), 'malformed', /hello\.runtime\.kind/);
    assertRefused(withRuntime({ microBatch: 0 }), 'malformed', /hello\.runtime\.microBatch/);
    assertRefused(withRuntime({ microBatch: 2.5 }), 'malformed', /hello\.runtime\.microBatch/);
    assertRefused(withRuntime({ cores: 1e9 }), 'malformed', /hello\.runtime\.cores/);
    assertRefused(withRuntime({ agent: 'a'.repeat(513) }), 'malformed', /hello\.runtime\.agent/);
    assertRefused(withRuntime({ backend: undefined }), 'malformed', /hello\.runtime\.backend: missing/);
    assert.doesNotThrow(() => validateMessage(withRuntime({ device: 'd'.repeat(512) })));
  });

  test('workerId, when sent, is a short non-empty string', () => {
    assertRefused(variant('hello', { workerId: '' }), 'malformed', /hello\.workerId/);
    assertRefused(variant('hello', { workerId: 'w'.repeat(129) }), 'malformed', /hello\.workerId/);
  });
});

describe('free text', () => {
  test('reasons, error messages and presets are capped at 1024 characters', () => {
    assertRefused(variant('bye', { reason: 'r'.repeat(1025) }), 'malformed', /bye\.reason/);
    assertRefused(variant('error', { message: 'm'.repeat(1025) }), 'malformed', /error\.message/);
    assert.doesNotThrow(() => validateMessage(variant('bye', { reason: 'r'.repeat(1024) })));
  });
});

describe('frames', () => {
  test('a frame above MAX_FRAME_BYTES is refused as too-large before decoding', () => {
    assert.equal(MAX_FRAME_BYTES, 64 * 1024 * 1024);
    const frame = new Uint8Array(MAX_FRAME_BYTES + 1);
    assert.throws(() => parseMessage(frame), { code: 'too-large', message: /67108865 bytes; the limit is 67108864/ });
  });

  test('maxFrameBytes lowers the cap', () => {
    const frame = encodeMessage(sampleMessages().gradient);
    assert.throws(() => parseMessage(frame, { maxFrameBytes: frame.length - 1 }), { code: 'too-large' });
    assert.doesNotThrow(() => parseMessage(frame, { maxFrameBytes: frame.length }));
  });

  test('malformed frames surface as malformed', () => {
    assert.throws(() => parseMessage(new Uint8Array(3)), { code: 'malformed' });
  });
});
