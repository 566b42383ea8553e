/**
 * A tab's threads on WASM: @chorus/worker's ReplicaPool over replica Web Workers (replica.js),
 * started from the training worker. The Web Worker adapter is all that is the tab's own.
 */
/// <reference lib="webworker" />
import { ReplicaPool, type FromReplica, type StartReplica } from '@chorus/worker';

/**
 * The most replicas a tab starts by default: each holds its own WASM heap (hundreds of MB for
 * resnet20v2 at micro-batch 32), and the browser, the page and the OS want a share too.
 */
export const MAX_TAB_REPLICAS = 4;

/** One replica per core, at most MAX_TAB_REPLICAS and one per 2 GB the browser says it has. */
export function defaultTabReplicas(nav: { hardwareConcurrency?: number; deviceMemory?: number }): number {
  const cores = nav.hardwareConcurrency || 1;
  const byMemory = nav.deviceMemory ? Math.floor(nav.deviceMemory / 2) : MAX_TAB_REPLICAS;
  return Math.max(1, Math.min(cores, MAX_TAB_REPLICAS, byMemory));
}

/** Starts `count` replica workers and resolves once every one has its WASM backend. */
export function startTabReplicas(count: number): Promise<ReplicaPool> {
  const script = new URL('./replica.js', self.location.href);
  const start: StartReplica = (index, events) => {
    const worker = new Worker(script, { type: 'module', name: `chorus-replica-${index}` });
    worker.onmessage = (event: MessageEvent<FromReplica>) => events.message(event.data);
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      events.failure(new Error(event.message || 'the replica worker could not be loaded'));
    };
    worker.onmessageerror = () => events.failure(new Error('a message from the replica worker could not be read'));
    return { post: (message, transfer) => worker.postMessage(message, transfer), terminate: () => worker.terminate() };
  };
  return ReplicaPool.open(count, start, 'replica worker');
}
