import type { WorkerRuntime } from '@chorus/protocol';
import type { Connection } from '../http/connection.js';

export type WorkerState = 'ready' | 'left';

export interface WorkerRecord {
  id: string;
  runtime: WorkerRuntime;
  conn: Connection | null;
  state: WorkerState;
  joinedAt: number;
  lastSeen: number;
  /** End-to-end images per second (EWMA over recent shards), null until measured. */
  speed: number | null;
  /** Last shard's round trip, milliseconds. */
  lastLatencyMs: number | null;
  lastComputeMs: number | null;
  /** Examples in the worker's last shard (its share of the batch). */
  lastShard: number | null;
  shardsDone: number;
  imagesDone: number;
  /** Missed a deadline in the current step. */
  straggling: boolean;
  /** A browser tab reported itself hidden (throttled). */
  hidden: boolean;
  /**
   * Its link fell behind the run: updates were not sent to it while its socket still held
   * more than the lag limit, and it gets no shares until it has drained and been sent the
   * weights in full again (Fleet.updateSinks, Fleet.resyncDrained).
   */
  behind: boolean;
  /**
   * Shards (training and evaluation) sent to this worker and not answered yet, oldest first:
   * a reply for one of these that comes too late is dropped quietly, a reply for any other
   * shard is a forgery or a bug and is refused.
   */
  awaiting: Set<number>;
  leftReason?: string;
}

/** Unanswered shards remembered per worker; a worker that never answers cannot grow the set without bound. */
export const MAX_AWAITED_SHARDS = 1024;

/** Records that `shardId` was sent to `worker`. */
export function expectReply(worker: WorkerRecord, shardId: number): void {
  worker.awaiting.add(shardId);
  if (worker.awaiting.size > MAX_AWAITED_SHARDS) worker.awaiting.delete(worker.awaiting.values().next().value!);
}

/**
 * Who is in the run. Workers are identified by an id the coordinator hands out; a worker that
 * reconnects with its id gets its record (and measured speed) back.
 */
export class Membership {
  private readonly workers = new Map<string, WorkerRecord>();
  private nextId = 1;

  join(runtime: WorkerRuntime, conn: Connection, now: number, previousId?: string): WorkerRecord {
    const previous = previousId ? this.workers.get(previousId) : undefined;
    if (previous && previous.state === 'left') {
      Object.assign(previous, { runtime, conn, state: 'ready', lastSeen: now, straggling: false, behind: false, leftReason: undefined });
      return previous;
    }
    const id = `w${this.nextId++}`;
    const record: WorkerRecord = {
      id,
      runtime,
      conn,
      state: 'ready',
      joinedAt: now,
      lastSeen: now,
      speed: null,
      lastLatencyMs: null,
      lastComputeMs: null,
      lastShard: null,
      shardsDone: 0,
      imagesDone: 0,
      straggling: false,
      hidden: false,
      behind: false,
      awaiting: new Set(),
    };
    this.workers.set(id, record);
    return record;
  }

  leave(id: string, reason: string): WorkerRecord | undefined {
    const record = this.workers.get(id);
    if (!record || record.state === 'left') return undefined;
    record.state = 'left';
    record.conn = null;
    record.leftReason = reason;
    return record;
  }

  get(id: string): WorkerRecord | undefined {
    return this.workers.get(id);
  }

  ready(): WorkerRecord[] {
    return [...this.workers.values()].filter((w) => w.state === 'ready');
  }

  /**
   * Ready workers that hold the current weights and can start on a shard soon: the ones shards
   * go to. A socket holding more than `maxQueuedBytes` not yet sent (more than the update just
   * queued for it) has a backlog that an assignment would wait behind, past its deadline.
   */
  assignable(maxQueuedBytes = Infinity): WorkerRecord[] {
    return this.ready().filter((w) => !w.behind && (w.conn?.buffered ?? 0) <= maxQueuedBytes);
  }

  all(): WorkerRecord[] {
    return [...this.workers.values()];
  }

  /** Workers silent for longer than `timeoutMs`. */
  silent(now: number, timeoutMs: number): WorkerRecord[] {
    return this.ready().filter((w) => now - w.lastSeen > timeoutMs);
  }

  /** Records a measured round trip: speed is an EWMA so one hiccup does not swing the shares. */
  recordShard(worker: WorkerRecord, count: number, latencyMs: number, computeMs: number): void {
    const speed = (count * 1000) / Math.max(1, latencyMs);
    worker.speed = worker.speed === null ? speed : 0.5 * worker.speed + 0.5 * speed;
    worker.lastLatencyMs = latencyMs;
    worker.lastComputeMs = computeMs;
    worker.lastShard = count;
    worker.shardsDone++;
    worker.imagesDone += count;
  }
}
