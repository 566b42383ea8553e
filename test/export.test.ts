import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { selectNodeBackend } from '@chorus/backend/node';
import { cifarDir, startCoordinator, startWorker } from './support.js';

const EVAL_EXAMPLES = 1000;

test('the README way to classify raw CIFAR-10 images with the exported model reproduces the coordinator\'s test accuracy', { timeout: 240_000 }, async (t) => {
  tf.env().set('PROD', true);
  await selectNodeBackend({ force: 'wasm' });
  const dir = await mkdtemp(join(tmpdir(), 'chorus-export-'));
  const exportDir = join(dir, 'model');
  const c = await startCoordinator(['--preset', 'tiny', '--batch', '64', '--bn-group', '8', '--steps', '60', '--eval-examples', String(EVAL_EXAMPLES), '--export', exportDir]);
  const worker = startWorker(c.url, c.token);
  // The export folder over HTTP, as a user would serve it to tf.loadLayersModel.
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
    assert.equal(await c.proc.exited, 0, c.proc.output);
    const reported = /test accuracy ([\d.]+)% at step 60 \((\d+) images\)/.exec(c.proc.output);
    assert.ok(reported, `the coordinator reports its final test accuracy:\n${c.proc.output}`);
    assert.equal(Number(reported[2]), EVAL_EXAMPLES);
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const { port } = http.address() as AddressInfo;

    // Exactly the README's steps: load, read the class names, feed raw pixels.
    const model = await tf.loadLayersModel(`http://127.0.0.1:${port}/model.json`);
    const { classNames } = (model.getUserDefinedMetadata() as { chorus: { classNames: string[] } }).chorus;
    assert.equal(classNames[3], 'cat');
    const bytes = await readFile(join(cifarDir, 'test_batch.bin'));
    let correct = 0;
    for (let i = 0; i < EVAL_EXAMPLES; i++) {
      // One record: a label byte, then the 1024 red, 1024 green and 1024 blue bytes.
      const record = bytes.subarray(i * 3073, (i + 1) * 3073);
      const label = record[0];
      const predicted = tf.tidy(() => {
        const image = tf.tensor3d(Float32Array.from(record.subarray(1)), [3, 32, 32]).transpose([1, 2, 0]);
        const probs = model.predict(image.expandDims(0)) as tf.Tensor;
        return probs.argMax(-1).dataSync()[0];
      });
      if (classNames[predicted] === classNames[label]) correct += 1;
    }
    model.dispose();
    const accuracy = (100 * correct) / EVAL_EXAMPLES;
    t.diagnostic(`coordinator: ${reported[1]}%, exported model on raw images: ${accuracy.toFixed(2)}%`);
    // Same weights, same images; the coordinator's evaluation ran in batches on the worker, so
    // an image exactly on a decision boundary could go either way: allow one.
    assert.ok(Math.abs(accuracy - Number(reported[1])) <= 100 / EVAL_EXAMPLES + 1e-9, `${accuracy}% vs ${reported[1]}%`);
    assert.ok(accuracy > 15, 'trained well above chance (10%), so the comparison means something');
  } finally {
    http.close();
    await worker.kill();
    await c.proc.kill();
    await rm(dir, { recursive: true, force: true });
  }
});
