import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { selectNodeBackend } from '@chorus/backend/node';
import { serveReplica, type ToReplica } from '@chorus/worker';
import type { ThreadData } from './pool.js';

/**
 * One replica on its own tfjs (and WASM instance), in a worker_thread: @chorus/worker's
 * serveReplica computes the micro-batches it is sent; the main thread adds the sums in order.
 */
const port = parentPort!;
const { backend } = workerData as ThreadData;
const onJob = serveReplica(
  (message, transfer) => port.postMessage(message, transfer),
  async () => {
    tf.env().set('PROD', true);
    // The main thread has already run the self-test on this backend.
    await selectNodeBackend({ force: backend, selfTest: false });
  },
);
port.on('message', (job: ToReplica) => onJob(job));
