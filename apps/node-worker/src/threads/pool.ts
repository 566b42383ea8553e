import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildGraph, weightLayout, type WeightLayout } from '@chorus/model';
import type { ShardResult } from '@chorus/protocol';
import { finishShardSums, microBatchRanges, shardSumsLength } from '@chorus/train';
import { toShardResult, type ShardComputer, type ShardInput, type ShardModel } from '@chorus/worker';
import type { FromThread, ThreadData, ToThread } from './messages.js';

const PIXELS = 3072;

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

/**
 * Cuts a shard's micro-batches into `parts` contiguous runs of whole micro-batches, balanced
 * by examples. Each run goes to one thread; the runs stay in shard order.
 */
export function splitRanges(ranges: [number, number][], parts: number): [number, number][][] {
  const total = ranges.length === 0 ? 0 : ranges[ranges.length - 1][1];
  const out: [number, number][][] = [];
  let next = 0;
  for (let p = 0; p < parts && next < ranges.length; p++) {
    const last = p === parts - 1;
    const target = (total * (p + 1)) / parts;
    const run: [number, number][] = [ranges[next++]];
    while (next < ranges.length && (last || ranges[next][1] <= target)) run.push(ranges[next++]);
    out.push(run);
  }
  return out;
}

interface Thread {
  worker: Worker;
  modelKey: string;
  paramsVersion: number;
  pending: Map<number, { resolve: (sums: Float32Array[]) => void; reject: (error: Error) => void }>;
  dead: Error | null;
}

/**
 * One replica per thread, each with its own tfjs and WASM instance: a shard's micro-batches (the
 * ones a single replica would cut) are shared among the threads, each returns the raw sums of
 * its micro-batches, and they are added here in micro-batch order with float32 additions, the
 * same additions a single replica makes on the device, so the result does not depend on the
 * number of threads (test/threads.test.ts checks it bit for bit).
 */
export class ReplicaThreadPool implements ShardComputer {
  private readonly threads: Thread[];
  private nextId = 0;
  private layoutKey = '';
  private layout: WeightLayout | null = null;

  private constructor(threads: Thread[]) {
    this.threads = threads;
  }

  get size(): number {
    return this.threads.length;
  }

  /** Starts `count` threads on `backend` and resolves once every one has its backend. */
  static async start(count: number, backend: 'wasm' | 'cpu'): Promise<ReplicaThreadPool> {
    if (!Number.isInteger(count) || count < 1) throw new Error(`threads must be a positive integer, got ${count}`);
    const script = threadScript();
    const threads: Thread[] = [];
    const ready: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const worker = new Worker(script, { workerData: { backend } satisfies ThreadData });
      const thread: Thread = { worker, modelKey: '', paramsVersion: -1, pending: new Map(), dead: null };
      threads.push(thread);
      ready.push(
        new Promise<void>((resolve, reject) => {
          const fail = (error: Error) => {
            thread.dead = error;
            for (const p of thread.pending.values()) p.reject(error);
            thread.pending.clear();
            reject(error);
          };
          worker.on('message', (message: FromThread) => {
            if (message.type === 'ready') resolve();
            else if (message.type === 'failed') fail(new Error(`replica thread ${i}: ${message.error}`));
            else {
              const p = thread.pending.get(message.id);
              thread.pending.delete(message.id);
              if (message.type === 'sums') p?.resolve(message.sums);
              else p?.reject(new Error(`replica thread ${i}: ${message.error}`));
            }
          });
          worker.on('error', (error) => fail(new Error(`replica thread ${i}: ${error.message}`)));
          worker.on('exit', (code) => fail(new Error(`replica thread ${i} exited (code ${code})`)));
        }),
      );
    }
    const pool = new ReplicaThreadPool(threads);
    try {
      await Promise.all(ready);
    } catch (error) {
      await pool.close();
      throw error;
    }
    return pool;
  }

  async compute(model: ShardModel, shard: ShardInput, now: () => number = () => performance.now()): Promise<ShardResult> {
    const start = now();
    const count = shard.labels.length;
    if (count === 0) throw new Error('shard: at least one example is needed');
    if (shard.pixels.length !== count * PIXELS || shard.indices.length !== count) {
      throw new Error(`shard: ${count} labels need ${count * PIXELS} pixels and ${count} indices`);
    }
    const modelDesc = { spec: model.spec, bnGroup: model.bnGroup, microBatch: model.microBatch };
    const modelKey = JSON.stringify(modelDesc);
    if (modelKey !== this.layoutKey) {
      this.layout = weightLayout(buildGraph(model.spec));
      this.layoutKey = modelKey;
    }
    const layout = this.layout!;
    const runs = splitRanges(microBatchRanges(count, model.microBatch, model.bnGroup), this.threads.length);
    const jobs = runs.map((run, t) => {
      const thread = this.threads[t];
      if (thread.dead) return Promise.reject(thread.dead);
      const from = run[0][0];
      const to = run[run.length - 1][1];
      const job: ToThread = {
        type: 'compute',
        id: this.nextId++,
        pixels: shard.pixels.slice(from * PIXELS, to * PIXELS),
        labels: shard.labels.slice(from, to),
        indices: shard.indices.slice(from, to),
        augmentSeed: shard.augmentSeed,
        ranges: run.map(([s, e]) => [s - from, e - from]),
      };
      if (thread.modelKey !== modelKey) {
        job.model = modelDesc;
        thread.modelKey = modelKey;
        thread.paramsVersion = -1;
      }
      if (thread.paramsVersion !== model.paramsVersion) {
        job.params = model.params;
        thread.paramsVersion = model.paramsVersion;
      }
      return new Promise<Float32Array[]>((resolve, reject) => {
        thread.pending.set(job.id, { resolve, reject });
        thread.worker.postMessage(job, [job.pixels.buffer, job.labels.buffer, job.indices.buffer] as ArrayBuffer[]);
      });
    });
    let results: Float32Array[][];
    try {
      results = await Promise.all(jobs);
    } catch (error) {
      // A thread that failed mid-job may hold other weights than it was sent: resend everything.
      for (const thread of this.threads) thread.modelKey = '';
      throw error;
    }
    // Float32Array stores round each double sum of two float32 values to float32, which is
    // exactly a float32 addition: the same sequence of additions a single replica makes.
    const length = shardSumsLength(layout);
    const total = new Float32Array(length);
    let first = true;
    for (const sums of results) {
      for (const s of sums) {
        if (s.length !== length) throw new Error(`replica thread: ${length} sums expected, got ${s.length}`);
        if (first) total.set(s);
        else for (let i = 0; i < length; i++) total[i] += s[i];
        first = false;
      }
    }
    return toShardResult(finishShardSums(layout, count, total), now() - start);
  }

  async close(): Promise<void> {
    await Promise.all(this.threads.map((t) => t.worker.terminate()));
  }
}
