import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, normalize } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { PRESETS, buildGraph, forward, initialParams, paramTensors, weightLayout } from '@chorus/model';
import { CHANNEL_MEAN, CHANNEL_STD } from '@chorus/data';
import { exportLayersModel } from '../src/store/export.js';

await tf.setBackend('cpu');

const spec = PRESETS.tiny;
const graph = buildGraph(spec);
const layout = weightLayout(graph);

let root: string;
let server: Server;
let baseUrl: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'chorus-export-test-'));
  server = createServer((req, res) => {
    void (async () => {
      const path = normalize(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
      if (!path.startsWith(root)) {
        res.writeHead(403).end();
        return;
      }
      try {
        const body = await readFile(path);
        res.writeHead(200, {
          'content-type': path.endsWith('.json') ? 'application/json' : 'application/octet-stream',
          'content-length': body.length,
        });
        res.end(body);
      } catch {
        res.writeHead(404).end();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(root, { recursive: true, force: true });
});

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** He-initialised weights with noise on every entry (gammas, betas and biases included). */
function randomParams(seed: number): Float32Array {
  const params = initialParams(layout, seed);
  const r = rng(seed + 1);
  for (let i = 0; i < params.length; i++) params[i] += (r() - 0.5) * 0.2;
  return params;
}

/** Means in [-0.5, 0.5), variances in [0.5, 2): far from the initial 0 and 1. */
function randomBnStats(seed: number): Float32Array {
  const stats = new Float32Array(layout.bnStatCount);
  const r = rng(seed);
  const half = layout.bnStatCount / 2;
  for (let i = 0; i < half; i++) stats[i] = r() - 0.5;
  for (let i = half; i < stats.length; i++) stats[i] = 0.5 + 1.5 * r();
  return stats;
}

const INFO = { preset: 'tiny', step: 7 };

/** Raw pixels 0..255 and the standardised input the functional model takes. */
function rawAndNormalized(n: number, seed: number): { raw: tf.Tensor4D; normalized: tf.Tensor4D } {
  return tf.tidy(() => {
    const raw = tf.randomUniform([n, 32, 32, 3], 0, 255, 'float32', seed).round() as tf.Tensor4D;
    const normalized = raw.sub(tf.tensor1d([...CHANNEL_MEAN])).div(tf.tensor1d([...CHANNEL_STD])) as tf.Tensor4D;
    return { raw: tf.keep(raw), normalized: tf.keep(normalized) };
  });
}

function reference(params: Float32Array, bnStats: Float32Array, x: tf.Tensor4D): Float32Array {
  return tf.tidy(() => {
    const out = forward(graph, layout, paramTensors(layout, params), x, { kind: 'running', stats: bnStats });
    return tf.softmax(out.logits).dataSync() as Float32Array;
  });
}

function assertClose(actual: Float32Array, expected: Float32Array, rtol: number): void {
  assert.equal(actual.length, expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i] - expected[i]) / Math.max(Math.abs(expected[i]), 1e-30);
    worst = Math.max(worst, err);
  }
  assert.ok(worst <= rtol, `max relative error ${worst} > ${rtol}`);
}

test('an exported model loads over HTTP and predicts what the functional reference computes', async () => {
  const dir = join(root, 'tiny');
  const params = randomParams(11);
  const bnStats = randomBnStats(12);
  const result = await exportLayersModel(dir, spec, params, bnStats, INFO);

  assert.equal(result.modelJson, join(dir, 'model.json'));
  assert.equal(result.weightsFiles.length, 1);
  const json = JSON.parse(await readFile(result.modelJson, 'utf8')) as tf.io.ModelJSON;
  assert.equal(json.format, 'layers-model');
  assert.deepEqual(json.weightsManifest[0].paths, [`./${basename(result.weightsFiles[0])}`]);
  const bytes = (await readFile(result.weightsFiles[0])).length;
  // The weights, plus the fixed normalisation layer: a scale and an offset per channel.
  assert.equal(bytes, 4 * (layout.paramCount + layout.bnStatCount + 2 * 3));
  const chorus = (json.userDefinedMetadata as { chorus: { classNames: string[]; preset: string; step: number; input: { values: string } } }).chorus;
  assert.deepEqual(chorus.classNames, ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']);
  assert.equal(chorus.preset, 'tiny');
  assert.equal(chorus.step, 7);
  assert.match(chorus.input.values, /raw pixel values 0\.\.255/);
  assert.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.tmp')), []);

  const model = await tf.loadLayersModel(`${baseUrl}/tiny/model.json`);
  try {
    // The exported model takes raw pixels and standardises them itself.
    const { raw, normalized: x } = rawAndNormalized(5, 3);
    const predicted = tf.tidy(() => (model.predict(raw) as tf.Tensor).dataSync() as Float32Array);
    const expected = reference(params, bnStats, x);
    raw.dispose();
    x.dispose();
    assert.equal(predicted.length, 5 * spec.classes);
    assertClose(predicted, expected, 1e-5);
    // Non-trivial: the running statistics matter (the initial ones give another answer).
    const plain = tf.tidy(() => {
      const { raw: r2, normalized: x2 } = rawAndNormalized(5, 3);
      r2.dispose();
      const init = new Float32Array(layout.bnStatCount).fill(1, layout.bnStatCount / 2);
      return reference(params, init, x2);
    });
    assert.ok(plain.some((v, i) => Math.abs(v - expected[i]) > 1e-3));
  } finally {
    model.dispose();
  }
});

test('re-exporting replaces the model atomically and removes the old weights file', async () => {
  const dir = join(root, 'again');
  const first = await exportLayersModel(dir, spec, randomParams(21), randomBnStats(22), INFO);
  const params = randomParams(23);
  const bnStats = randomBnStats(24);
  const second = await exportLayersModel(dir, spec, params, bnStats, INFO);
  assert.notEqual(first.weightsFiles[0], second.weightsFiles[0]);
  assert.deepEqual((await readdir(dir)).sort(), ['model.json', basename(second.weightsFiles[0])].sort());

  const model = await tf.loadLayersModel(`${baseUrl}/again/model.json`);
  try {
    const { raw, normalized: x } = rawAndNormalized(2, 5);
    const predicted = tf.tidy(() => (model.predict(raw) as tf.Tensor).dataSync() as Float32Array);
    assertClose(predicted, reference(params, bnStats, x), 1e-5);
    raw.dispose();
    x.dispose();
  } finally {
    model.dispose();
  }
});

test('export rejects arrays of the wrong length and leaves nothing behind', async () => {
  const dir = join(root, 'bad');
  await assert.rejects(
    exportLayersModel(dir, spec, new Float32Array(layout.paramCount - 1), randomBnStats(1), INFO),
    /params: \d+ values expected/,
  );
  await assert.rejects(readdir(dir), { code: 'ENOENT' });
});
