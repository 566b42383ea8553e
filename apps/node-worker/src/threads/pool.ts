import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ReplicaPool, type FromReplica, type StartReplica } from '@chorus/worker';

/** What a replica thread is started with. */
export interface ThreadData {
  backend: 'wasm' | 'cpu';
}

/**
 * The replica thread's compiled script: next to this file in dist/, or dist's when this runs
 * from src/ under tsx (whose loader a worker thread does not inherit).
 */
function threadScript(): URL {
  for (const candidate of ['./replica-thread.js', '../../dist/threads/replica-thread.js']) {
    const url = new URL(candidate, import.meta.url);
    if (existsSync(fileURLToPath(url))) return url;
  }
  throw new Error('the replica thread script (dist/threads/replica-thread.js) is missing: run npm run build');
}

/** A ReplicaPool whose replicas are worker_threads: what a Node worker on wasm/cpu trains with. */
export type ReplicaThreadPool = ReplicaPool;

export const ReplicaThreadPool = {
  /** Starts `count` replica threads on `backend` and resolves once every one has its backend. */
  start(count: number, backend: 'wasm' | 'cpu'): Promise<ReplicaThreadPool> {
    const script = threadScript();
    const start: StartReplica = (_index, events) => {
      const worker = new Worker(script, { workerData: { backend } satisfies ThreadData });
      worker.on('message', (message: FromReplica) => events.message(message));
      worker.on('error', (error) => events.failure(error));
      worker.on('exit', (code) => events.failure(new Error(`exited (code ${code})`)));
      return { post: (message, transfer) => worker.postMessage(message, transfer), terminate: () => worker.terminate() };
    };
    return ReplicaPool.open(count, start, 'replica thread');
  },
};

export { splitRanges } from '@chorus/worker';
