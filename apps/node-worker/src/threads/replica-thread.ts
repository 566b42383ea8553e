import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { selectNodeBackend } from '@chorus/backend/node';
import { Replica } from '@chorus/train';
import { shardImages } from '@chorus/worker';
import type { FromThread, ThreadData, ToThread } from './messages.js';

/**
 * One replica on its own tfjs (and WASM instance): it computes the micro-batches of a shard it
 * is given and returns each one's raw sums, which the main thread adds in shard order.
 */
const port = parentPort!;
const { backend } = workerData as ThreadData;
const send = (message: FromThread, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

let replica: Replica | null = null;
let modelKey = '';
// Jobs run one after another, as they were sent.
let queue: Promise<void> = Promise.resolve();

async function compute(job: ToThread): Promise<void> {
  if (job.model) {
    const key = JSON.stringify(job.model);
    if (key !== modelKey) {
      replica?.dispose();
      replica = new Replica(job.model.spec, { microBatch: job.model.microBatch, bnGroup: job.model.bnGroup });
      modelKey = key;
    }
  }
  if (!replica) throw new Error('no model was sent before the first job');
  if (job.params) replica.setParams(job.params);
  const images = shardImages(job.pixels, job.indices, job.augmentSeed >= 0 ? job.augmentSeed : null);
  const sums: Float32Array[] = [];
  for (const [start, end] of job.ranges) sums.push(await replica.microBatchSums(images, job.labels, start, end));
  // Moved, not copied, when a read-back owns its whole buffer (never the WASM heap).
  const owned = sums.filter((s) => s.byteOffset === 0 && s.byteLength === s.buffer.byteLength && !(s.buffer instanceof SharedArrayBuffer));
  send({ type: 'sums', id: job.id, sums }, owned.map((s) => s.buffer as ArrayBuffer));
}

port.on('message', (job: ToThread) => {
  queue = queue.then(() => compute(job)).catch((error: unknown) => {
    send({ type: 'error', id: job.id, error: error instanceof Error ? error.message : String(error) });
  });
});

try {
  tf.env().set('PROD', true);
  // The main thread has already run the self-test on this backend.
  await selectNodeBackend({ force: backend, selfTest: false });
  send({ type: 'ready' });
} catch (error) {
  send({ type: 'failed', error: error instanceof Error ? error.message : String(error) });
}
