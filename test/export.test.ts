import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { decodeCheckpoint } from '@chorus/coordinator';
import { toNormalizedNHWC } from '@chorus/data';
import { loadCifar10 } from '@chorus/data/node';
import { PRESETS, buildGraph, forward, paramTensors, weightLayout } from '@chorus/model';
import { cifarDir, startCoordinator, startWorker } from './support.js';

test('the exported model loads with tf.loadLayersModel and predicts what the master weights predict', { timeout: 180_000 }, async () => {
  tf.env().set('PROD', true);
  await tf.setBackend('cpu');
  const dir = await mkdtemp(join(tmpdir(), 'chorus-export-'));
  const exportDir = join(dir, 'model');
  const ckptDir = join(dir, 'ckpt');
  const c = await startCoordinator(['--preset', 'tiny', '--batch', '32', '--bn-group', '8', '--steps', '3', '--eval-examples', '16', '--export', exportDir, '--checkpoint-dir', ckptDir]);
  const worker = startWorker(c.url, c.token);
  const http = createServer(async (req, res) => {
    try {
      const body = await readFile(join(exportDir, basename(req.url ?? '')));
      res.writeHead(200);
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  try {
    assert.equal(await c.proc.exit(), 0, c.proc.output);
    const files = (await readdir(ckptDir)).filter((f) => f.endsWith('.chorus')).sort();
    const state = decodeCheckpoint(new Uint8Array(await readFile(join(ckptDir, files.at(-1)!))));
    assert.equal(state.step, 3);
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const { port } = http.address() as AddressInfo;
    const model = await tf.loadLayersModel(`http://127.0.0.1:${port}/model.json`);
    const data = await loadCifar10(cifarDir);
    const x = tf.tensor4d(toNormalizedNHWC(data.test.pixels.subarray(0, 8 * 3072), 8), [8, 32, 32, 3]);
    const predicted = (model.predict(x) as tf.Tensor).dataSync();
    const graph = buildGraph(PRESETS.tiny);
    const layout = weightLayout(graph);
    const expected = tf.softmax(forward(graph, layout, paramTensors(layout, state.params), x, { kind: 'running', stats: state.bnStats }).logits).dataSync();
    let diff = 0;
    for (let i = 0; i < expected.length; i++) diff = Math.max(diff, Math.abs(predicted[i] - expected[i]));
    assert.ok(diff < 1e-5, `max |p - p_ref| = ${diff}`);
  } finally {
    http.close();
    await worker.kill();
    await c.proc.kill();
    await rm(dir, { recursive: true, force: true });
  }
});
