import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GRADIENT_CODEC_NAMES, ProtocolError, fp32Codec, getGradientCodec } from '../src/index.js';

test('fp32 is the identity and never copies', () => {
  const gradient = Float32Array.from([1, -2, 3.5]);
  const payload = fp32Codec.encode(gradient);
  assert.equal(payload, gradient);
  assert.equal(fp32Codec.decode(payload, 3), gradient);
});

test('fp32 decodes raw bytes as a view when aligned, a copy when not', () => {
  const gradient = Float32Array.from([1, -2, 3.5]);
  const bytes = new Uint8Array(gradient.buffer);
  const view = fp32Codec.decode(bytes, 3);
  assert.equal(view.buffer, gradient.buffer);
  const backing = new Uint8Array(13);
  backing.set(bytes, 1);
  const copy = fp32Codec.decode(Buffer.from(backing.buffer, 1, 12), 3);
  assert.notEqual(copy.buffer, backing.buffer);
  assert.deepEqual(copy, gradient);
});

test('fp32 refuses a payload of the wrong length', () => {
  assert.throws(() => fp32Codec.decode(new Float32Array(1), 2), { name: 'ProtocolError', code: 'bad-gradient', message: /1 elements; expected 2/ });
  assert.throws(() => fp32Codec.decode(new Uint8Array(6), 2), { code: 'bad-gradient', message: /6 bytes/ });
});

test('getGradientCodec finds fp32 and names the known codecs for anything else', () => {
  assert.equal(getGradientCodec('fp32'), fp32Codec);
  assert.deepEqual(GRADIENT_CODEC_NAMES, ['fp32']);
  assert.throws(
    () => getGradientCodec('fp16'),
    (error: unknown) => error instanceof ProtocolError && /unknown gradient codec "fp16"; this build knows fp32/.test(error.message),
  );
  assert.throws(() => getGradientCodec('toString'), /unknown gradient codec/);
});
