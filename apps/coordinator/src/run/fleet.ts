import { createHash, timingSafeEqual } from 'node:crypto';
import { CLOSE_CODES, type ErrorCode, type Hello, type Message } from '@chorus/protocol';
import type { Connection } from '../http/connection.js';
import type { ChorusMetrics } from '../ops/metrics.js';
import type { RunLog } from '../ops/run-log.js';
import { shareShortage } from '../ops/status.js';
import type { EvalShardResult } from './eval-tally.js';
import { Membership, type WorkerRecord } from './membership.js';
import type { ReducibleShard } from './reducer.js';
import type { ShardRound } from './shard-round.js';
import type { Arrival } from './step-record.js';

/** Why a message from an admitted worker is refused; the server answers and closes that connection. */
export interface Refusal {
  code: ErrorCode;
  message: string;
}

/** The rounds in flight, as the fleet routes results to them. */
export interface FleetHost {
  now(): number;
  /** Sends a new worker the run and the current weights. */
  welcome(conn: Connection, worker: WorkerRecord): void;
  training(): { step: number; round: ShardRound<ReducibleShard>; arrivals: Arrival[] } | null;
  evaluation(): ShardRound<EvalShardResult> | null;
  /** Membership changed: the loop may be waiting for workers. */
  changed(): void;
}

/**
 * The workers' side of the run: who may join (the token), who is in (membership), what each
 * message means for the rounds in flight, and what people are told (events) when workers come,
 * go, are refused or cannot all have a share.
 */
export class Fleet {
  readonly membership = new Membership();
  private readonly host: FleetHost;
  private readonly history: RunLog;
  private readonly metrics: ChorusMetrics;
  private readonly tokenDigest: Buffer;
  private readonly batch: { size: number; bnGroup: number };
  /** Whether a share shortage has been reported, so it is said once when it begins. */
  private reportedShortage = false;

  constructor(input: { token: string; host: FleetHost; history: RunLog; metrics: ChorusMetrics; batch: { size: number; bnGroup: number }}) {
    this.host = input.host;
    this.history = input.history;
    this.metrics = input.metrics;
    this.batch = input.batch;
    this.tokenDigest = createHash('sha256').update(input.token).digest();
  }

  /**
   * Checks a join or control token in constant time: both sides are hashed first, so neither
   * the comparison nor the length check tells a guesser how much of its guess was right.
   */
  checkToken(token: string): boolean {
    return timingSafeEqual(createHash('sha256').update(token).digest(), this.tokenDigest);
  }

  /** A hello whose token the server has checked (checkToken): admit, send the weights. */
  admit(conn: Connection, hello: Hello): WorkerRecord {
    const worker = this.membership.join(hello.runtime, conn, this.host.now(), hello.workerId);
    this.host.welcome(conn, worker);
    const r = hello.runtime;
    this.history.event('join', `worker ${worker.id} joined (${r.kind}, ${r.backend}, ${r.device})`, { worker: worker.id });
    this.changed();
    this.host.training()?.round.workerJoined();
    this.host.evaluation()?.workerJoined();
    return worker;
  }

  /** A validated message from an admitted worker; a refusal means the server must close it. */
  receive(worker: WorkerRecord, message: Message): Refusal | null {
    worker.lastSeen = this.host.now();
    switch (message.type) {
      case 'gradient': {
        if (!worker.awaiting.delete(message.shardId)) return neverSent('bad-gradient', 'a gradient', message.shardId);
        const training = this.host.training();
        if (!training || message.step !== training.step) return null; // a late reply
        // parseMessage has checked every value and scale and the run's codec: the reducer adds
        // the payload as it is to the batch sum, with no second scan and no expanded copy.
        const gradient = { values: message.gradient, scales: message.scales };
        const outcome = training.round.accept(worker, message.shardId, message.count, { ...message, gradient });
        if (outcome.kind === 'refused') return { code: 'bad-gradient', message: outcome.reason };
        if (outcome.kind === 'accepted') {
          const { shard, arrivedAt } = outcome;
          training.arrivals.push({ workerId: worker.id, shardId: shard.id, count: message.count, sentAt: shard.sentAt, arrivedAt, computeMs: message.computeMs });
          this.membership.recordShard(worker, message.count, arrivedAt - shard.sentAt, message.computeMs);
          worker.straggling = false;
          this.metrics.setWorkerImagesPerSecond(worker.id, worker.runtime.backend, worker.speed ?? 0);
        }
        return null;
      }
      case 'evalResult': {
        if (!worker.awaiting.delete(message.shardId)) return neverSent('malformed', 'an evaluation result', message.shardId);
        const outcome = this.host.evaluation()?.accept(worker, message.shardId, message.count, message);
        return outcome?.kind === 'refused' ? { code: 'malformed', message: `evaluation ${outcome.reason}` } : null;
      }
      case 'heartbeat':
        if (message.hidden !== undefined && message.hidden !== worker.hidden) {
          worker.hidden = message.hidden;
          this.history.event('throttle', `worker ${worker.id} is ${message.hidden ? 'hidden (throttled)' : 'visible again'}`);
        }
        return null;
      case 'bye':
        this.depart(worker, `left: ${message.reason}`);
        worker.conn?.close(CLOSE_CODES.normal, 'bye');
        return null;
      default:
        return { code: 'malformed', message: `a worker may not send '${message.type}'` };
    }
  }

  /**
   * Records a refused message (the server closes the connection). `quiet` counts it without an
   * event or log line: the server's choice while a flood of refusals comes from strangers.
   */
  refused(reason: string, detail: string, workerId?: string, options: { quiet?: boolean } = {}): void {
    this.metrics.messagesRefused.inc({ reason });
    if (!options.quiet) this.history.event('refused', `refused a message${workerId ? ` from ${workerId}` : ''}: ${detail}`, { reason });
  }

  /**
   * The worker's connection is gone (closed, killed, timed out, refused). `conn` names the
   * connection that ended: a late close of an old socket must not remove a worker that has
   * already rejoined on a new one.
   */
  depart(worker: WorkerRecord, reason: string, conn?: Connection): void {
    if (conn && worker.conn !== conn) return;
    if (!this.membership.leave(worker.id, reason)) return;
    this.history.event('leave', `worker ${worker.id} ${reason}`, { worker: worker.id });
    this.changed();
    this.metrics.removeWorker(worker.id);
    this.host.training()?.round.workerLeft(worker.id);
    this.host.evaluation()?.workerLeft(worker.id);
  }

  /** Workers silent past the timeout are cut off and leave. */
  dropSilent(now: number, timeoutMs: number): void {
    for (const worker of this.membership.silent(now, timeoutMs)) {
      worker.conn?.terminate();
      this.depart(worker, `timed out (silent for ${Math.round((now - worker.lastSeen) / 1000)} s)`);
    }
  }

  /**
   * The sockets this step's update goes to: every ready worker's, except where the socket still
   * holds more than `lagLimitBytes` not yet handed to the kernel. Such a link is slower than the
   * run (a tab on slow Wi-Fi in a fleet of GPUs), and queueing every update for it would grow
   * the coordinator's memory step after step. That worker is marked behind: no more updates and
   * no shares until its socket has drained, and then the weights in full (resyncDrained).
   */
  updateSinks(lagLimitBytes: number): Connection[] {
    const sinks: Connection[] = [];
    for (const worker of this.membership.ready()) {
      const conn = worker.conn;
      if (!conn || worker.behind) continue;
      if (conn.buffered > lagLimitBytes) {
        worker.behind = true;
        const queued = (conn.buffered / 1e6).toFixed(1);
        this.history.event('behind', `worker ${worker.id} fell behind: ${queued} MB of updates still queued for its link; it sits out until they have left`, { worker: worker.id });
        continue;
      }
      sinks.push(conn);
    }
    return sinks;
  }

  /**
   * Workers behind whose sockets have handed everything to the kernel: the weights in full (a
   * welcome, which they take as a rejoin), and shares again from the ranges still open.
   */
  resyncDrained(): void {
    let resynced = false;
    for (const worker of this.membership.ready()) {
      if (!worker.behind || !worker.conn || worker.conn.buffered > 0) continue;
      worker.behind = false;
      this.host.welcome(worker.conn, worker);
      this.history.event('caught-up', `worker ${worker.id} caught up: sent the weights in full, it trains again`, { worker: worker.id });
      resynced = true;
    }
    if (!resynced) return;
    this.changed();
    this.host.training()?.round.workerJoined();
    this.host.evaluation()?.workerJoined();
  }

  /** Why ready workers cannot all have a share, or null. */
  shareShortage(ready = this.membership.ready().length): string | null {
    return shareShortage(this.batch.size, this.batch.bnGroup, ready);
  }

  private changed(): void {
    const ready = this.membership.ready().length;
    this.metrics.workers.set(ready);
    const shortage = this.shareShortage(ready);
    if (shortage && !this.reportedShortage) this.history.event('idle', shortage);
    this.reportedShortage = shortage !== null;
    this.host.changed();
  }
}

function neverSent(code: ErrorCode, what: string, shardId: number): Refusal {
  return { code, message: `${what} for shard ${shardId}, which was never assigned to this worker or was answered already` };
}
