/**
 * One replica per thread, on any platform: a pool that shares a shard's micro-batches among
 * replicas running elsewhere (a Node worker's worker_threads, a tab's Web Workers) and adds
 * their raw sums in micro-batch order, and the replica side that computes them. The platforms
 * supply only how a replica is started and talked to (ReplicaPort); nothing here imports
 * node:* or the DOM.
 */
import type { ResNetV2Spec } from '@chorus/model';
import { buildGraph, weightLayout, type WeightLayout } from '@chorus/model';
import type { ShardResult } from '@chorus/protocol';
import { Replica, finishShardSums, microBatchRanges, shardSumsLength } from '@chorus/train';
import { toShardResult, type ShardComputer, type ShardInput, type ShardModel } from './compute-shard.js';
import { shardImages } from './shard-input.js';

const PIXELS = 3072;

/** Pool -> replica. */
export type ToReplica = {
  type: 'compute';
  id: number;
  /** Sent when the model changed since this replica's last job. */
  model?: { spec: ResNetV2Spec; bnGroup: number; microBatch: number };
  /** Sent when the weights changed since this replica's last job. */
  params?: Float32Array;
  /** This replica's slice of the shard: whole micro-batches, in shard order. */
  pixels: Uint8Array;
  labels: Uint8Array;
  indices: Int32Array;
  augmentSeed: number;
  /** Micro-batches relative to the slice. */
  ranges: [number, number][];
};

/** Replica -> pool. */
export type FromReplica =
  | { type: 'ready' }
  | { type: 'failed'; error: string }
  | { type: 'sums'; id: number; sums: Float32Array[] }
  | { type: 'error'; id: number; error: string };

/** A started replica as the pool sees it: a worker_thread or a Web Worker, adapted. */
export interface ReplicaPort {
  /** postMessage, moving `transfer`. */
  post(message: ToReplica, transfer: ArrayBuffer[]): void;
  terminate(): Promise<unknown> | void;
}

/** What a platform's replica reports, wired by the adapter to its message and error events. */
export interface ReplicaEvents {
  message(message: FromReplica): void;
  /** The replica is gone or broken (an uncaught error, an exit). */
  failure(error: Error): void;
}

/** Starts replica `index` (its script, its backend) and wires its events; the platform's part. */
export type StartReplica = (index: number, events: ReplicaEvents) => ReplicaPort;

/**
 * Cuts a shard's micro-batches into `parts` contiguous runs of whole micro-batches, balanced
 * by examples. Each run goes to one replica; the runs stay in shard order.
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

interface Member {
  port: ReplicaPort;
  modelKey: string;
  paramsVersion: number;
  pending: Map<number, { resolve: (sums: Float32Array[]) => void; reject: (error: Error) => void }>;
  dead: Error | null;
}

/**
 * One replica per thread, each with its own tfjs (and WASM instance): a shard's micro-batches
 * (the ones a single replica would cut) are shared among the replicas, each returns the raw sums
 * of its micro-batches, and they are added here in micro-batch order with float32 additions, the
 * same additions a single replica makes on the device, so the result does not depend on the
 * number of replicas (test/threads.test.ts and test/browser.test.ts check it bit for bit).
 */
export class ReplicaPool implements ShardComputer {
  private readonly members: Member[];
  private nextId = 0;
  private layoutKey = '';
  private layout: WeightLayout | null = null;

  private constructor(members: Member[]) {
    this.members = members;
  }

  get size(): number {
    return this.members.length;
  }

  /** Starts `count` replicas with `start` and resolves once every one has its backend. */
  static async open(count: number, start: StartReplica, label = 'replica'): Promise<ReplicaPool> {
    if (!Number.isInteger(count) || count < 1) throw new Error(`replicas must be a positive integer, got ${count}`);
    const members: Member[] = [];
    const ready: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      ready.push(
        new Promise<void>((resolve, reject) => {
          const member = { modelKey: '', paramsVersion: -1, pending: new Map() as Member['pending'], dead: null as Error | null };
          const fail = (error: Error) => {
            member.dead ??= error;
            for (const p of member.pending.values()) p.reject(error);
            member.pending.clear();
            reject(error);
          };
          // A start that throws rejects this promise (and leaves nothing to close).
          const port = start(i, {
            message: (message) => {
              if (message.type === 'ready') resolve();
              else if (message.type === 'failed') fail(new Error(`${label} ${i}: ${message.error}`));
              else {
                const p = member.pending.get(message.id);
                member.pending.delete(message.id);
                if (message.type === 'sums') p?.resolve(message.sums);
                else p?.reject(new Error(`${label} ${i}: ${message.error}`));
              }
            },
            failure: (error) => fail(new Error(`${label} ${i}: ${error.message}`)),
          });
          members.push(Object.assign(member, { port }));
        }),
      );
    }
    const pool = new ReplicaPool(members);
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
    const runs = splitRanges(microBatchRanges(count, model.microBatch, model.bnGroup), this.members.length);
    const jobs = runs.map((run, t) => {
      const member = this.members[t];
      if (member.dead) return Promise.reject(member.dead);
      const from = run[0][0];
      const to = run[run.length - 1][1];
      const job: ToReplica = {
        type: 'compute',
        id: this.nextId++,
        pixels: shard.pixels.slice(from * PIXELS, to * PIXELS),
        labels: shard.labels.slice(from, to),
        indices: shard.indices.slice(from, to),
        augmentSeed: shard.augmentSeed,
        ranges: run.map(([s, e]) => [s - from, e - from]),
      };
      if (member.modelKey !== modelKey) {
        job.model = modelDesc;
        member.modelKey = modelKey;
        member.paramsVersion = -1;
      }
      if (member.paramsVersion !== model.paramsVersion) {
        job.params = model.params;
        member.paramsVersion = model.paramsVersion;
      }
      return new Promise<Float32Array[]>((resolve, reject) => {
        member.pending.set(job.id, { resolve, reject });
        member.port.post(job, [job.pixels.buffer, job.labels.buffer, job.indices.buffer] as ArrayBuffer[]);
      });
    });
    let results: Float32Array[][];
    try {
      results = await Promise.all(jobs);
    } catch (error) {
      // A replica that failed mid-job may hold other weights than it was sent: resend everything.
      for (const member of this.members) member.modelKey = '';
      throw error;
    }
    // Float32Array stores round each double sum of two float32 values to float32, which is
    // exactly a float32 addition: the same sequence of additions a single replica makes.
    const length = shardSumsLength(layout);
    const total = new Float32Array(length);
    let first = true;
    for (const sums of results) {
      for (const s of sums) {
        if (s.length !== length) throw new Error(`replica: ${length} sums expected, got ${s.length}`);
        if (first) total.set(s);
        else for (let i = 0; i < length; i++) total[i] += s[i];
        first = false;
      }
    }
    return toShardResult(finishShardSums(layout, count, total), now() - start);
  }

  async close(): Promise<void> {
    await Promise.all(this.members.map((m) => m.port.terminate()));
  }
}

/**
 * The replica side, in its thread: runs `init` (the platform's backend), says ready or failed,
 * and returns the handler for the pool's messages, which computes the raw sums of each job's
 * micro-batches on one Replica, jobs one after another in the order they came.
 */
export function serveReplica(send: (message: FromReplica, transfer: ArrayBuffer[]) => void, init: () => Promise<void>): (job: ToReplica) => void {
  let replica: Replica | null = null;
  let modelKey = '';
  let queue: Promise<void> = Promise.resolve();
  const text = (error: unknown) => (error instanceof Error ? error.message : String(error));

  async function compute(job: ToReplica): Promise<void> {
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
    // Moved, not copied, when a read-back owns its whole buffer (never a WASM heap). A page that
    // is not cross-origin isolated has no SharedArrayBuffer at all.
    const shared = (s: Float32Array) => typeof SharedArrayBuffer !== 'undefined' && s.buffer instanceof SharedArrayBuffer;
    const owned = sums.filter((s) => s.byteOffset === 0 && s.byteLength === s.buffer.byteLength && !shared(s));
    send({ type: 'sums', id: job.id, sums }, owned.map((s) => s.buffer as ArrayBuffer));
  }

  // Jobs only come after 'ready': the pool waits for every replica before its first shard.
  init().then(
    () => send({ type: 'ready' }, []),
    (error: unknown) => send({ type: 'failed', error: text(error) }, []),
  );
  return (job) => {
    queue = queue.then(() => compute(job)).catch((error: unknown) => send({ type: 'error', id: job.id, error: text(error) }, []));
  };
}
