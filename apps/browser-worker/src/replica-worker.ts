/**
 * One of a tab's replica workers (a module Web Worker the training worker starts when it trains
 * on WASM with more than one thread): its own tfjs and WASM instance, serving @chorus/worker's
 * replica side; the training worker's ReplicaPool shares each shard among these workers and adds
 * their sums in micro-batch order, so the result has the bits of one replica.
 */
/// <reference lib="webworker" />
import * as tf from '@tensorflow/tfjs';
import { serveReplica, type ToReplica } from '@chorus/worker';
import { loadWasm } from './wasm-backend.js';

declare const self: DedicatedWorkerGlobalScope;

const onJob = serveReplica(
  (message, transfer) => self.postMessage(message, transfer),
  async () => {
    tf.env().set('PROD', true);
    // replica.js and the .wasm files are in the same folder.
    await loadWasm(new URL('./', self.location.href).href, { singleThreaded: true });
  },
);
self.onmessage = (event: MessageEvent<ToReplica>) => onJob(event.data);
