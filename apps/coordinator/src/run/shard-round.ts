import { expectReply, type WorkerRecord } from './membership.js';
import type { ShardPlan } from './scheduler.js';

/** One piece of a round, sent to one worker. */
export interface RoundShard {
  id: number;
  workerId: string;
  /** Positions in the round, [start, end). */
  start: number;
  end: number;
  sentAt: number;
  /** When the shard counts as late; Infinity for never. */
  deadline: number;
}

/** What a round needs from the rest of the coordinator; nothing else reaches it. */
export interface RoundPort {
  /** Workers that may take shards now, in join order. */
  ready(): WorkerRecord[];
  worker(id: string): WorkerRecord | undefined;
  now(): number;
  /** A shard id never used before in this run (ids are global, so a reply names its round). */
  nextShardId(): number;
  /** Sends the shard's work (an assign or an evaluate message) to the worker. */
  send(worker: WorkerRecord, shard: RoundShard): void;
  /** How long `worker` may take for `count` examples, in milliseconds. */
  deadlineFor(worker: WorkerRecord, count: number): number;
  event(kind: 'reissue' | 'straggler', message: string): void;
  /** Counts a re-issued shard (metrics). */
  reissued(): void;
}

/** Where a round's results go: the step reducer for training, a tally for evaluation. */
export interface RoundSink<R> {
  expect(start: number, end: number): void;
  withdraw(start: number): void;
  isPending(start: number): boolean;
  /** Adds a result for [start, end); false when that range was already counted. */
  accept(start: number, end: number, result: R): boolean;
  readonly complete: boolean;
}

/** Splits [start, end) among workers (scheduler.ts for training; evaluation cuts smaller pieces). */
export type Planner = (start: number, end: number, workers: readonly WorkerRecord[]) => ShardPlan[];

/** What became of a reply. */
export type Acceptance =
  | { kind: 'accepted'; shard: RoundShard; arrivedAt: number }
  /** A reply for a shard no longer awaited (re-issued, or counted already): dropped quietly. */
  | { kind: 'late' }
  | { kind: 'refused'; reason: string };

/**
 * One round of shards: a training step or an evaluation. It plans the ranges, sends them,
 * watches deadlines, re-issues what a departed or late worker held, keeps what nobody can take
 * yet until a worker joins, and hands each range's result to the sink exactly once. It owns no
 * timer and no socket: the coordinator calls tick(now) and the port sends, so tests drive it
 * with a fake clock and a fake port.
 */
export class ShardRound<R> {
  /** 'step 12' or 'evaluation 3', for events. */
  readonly label: string;
  readonly size: number;
  readonly startedAt: number;
  /** Milliseconds spent in the sink's accept (the reduction, for training). */
  sinkMs = 0;
  /** Resolves true when every range is in, false when the round was cancelled. */
  readonly done: Promise<boolean>;
  private readonly sink: RoundSink<R>;
  private readonly port: RoundPort;
  private readonly plan: Planner;
  private readonly shards = new Map<number, RoundShard>();
  /** Ranges nobody could take (no worker ready); assigned when one joins. */
  private readonly orphans: { start: number; end: number }[] = [];
  /** Workers whose results this round accepted. */
  private readonly contributors = new Set<string>();
  private settle!: (complete: boolean) => void;
  private settled = false;

  /** What a reply is called in refusals: 'gradient', 'result'. */
  private readonly replyName: string;

  constructor(options: { label: string; size: number; sink: RoundSink<R>; port: RoundPort; plan: Planner; replyName?: string }) {
    this.label = options.label;
    this.replyName = options.replyName ?? 'result';
    this.size = options.size;
    this.sink = options.sink;
    this.port = options.port;
    this.plan = options.plan;
    this.startedAt = options.port.now();
    this.done = new Promise((resolve) => (this.settle = resolve));
  }

  /** Sends the whole range out over the ready workers. */
  start(): void {
    if (this.size === 0) return this.finish(true);
    this.assign(0, this.size, this.port.ready());
  }

  /**
   * A worker's result for `shardId`, claiming `count` examples. The caller has already refused
   * replies for shards that were never sent to this worker.
   */
  accept(worker: WorkerRecord, shardId: number, count: number, result: R): Acceptance {
    const shard = this.shards.get(shardId);
    if (!shard || shard.workerId !== worker.id || this.settled) return { kind: 'late' };
    if (count !== shard.end - shard.start) {
      return { kind: 'refused', reason: `shard ${shard.id} has ${shard.end - shard.start} examples, the ${this.replyName} says ${count}` };
    }
    const arrivedAt = this.port.now();
    const counted = this.sink.accept(shard.start, shard.end, result);
    this.sinkMs += this.port.now() - arrivedAt;
    this.shards.delete(shard.id);
    if (!counted) return { kind: 'late' };
    this.contributors.add(worker.id);
    if (this.sink.complete) this.finish(true);
    return { kind: 'accepted', shard, arrivedAt };
  }

  /** `workerId` is gone: what it held goes to the others (idle ones first), or waits for a joiner. */
  workerLeft(workerId: string): void {
    for (const shard of this.pendingOf(workerId)) this.reissue(shard, 'left');
  }

  /** A worker joined or came back: ranges nobody could take go out now. */
  workerJoined(): void {
    if (this.settled || this.orphans.length === 0) return;
    const ready = this.port.ready();
    if (ready.length === 0) return;
    for (const orphan of this.orphans.splice(0)) {
      this.port.reissued();
      this.assign(orphan.start, orphan.end, ready);
    }
  }

  /**
   * Deadlines: a worker past one is marked straggling (once), and its shard goes to an idle
   * worker if there is one; with nobody idle it keeps the shard, since re-issuing to a busy
   * worker would only queue it behind that worker's own share.
   */
  tick(now: number): void {
    if (this.settled) return;
    for (const shard of [...this.shards.values()]) {
      if (now <= shard.deadline || !this.sink.isPending(shard.start)) continue;
      const worker = this.port.worker(shard.workerId);
      if (worker && !worker.straggling) {
        worker.straggling = true;
        this.port.event(
          'straggler',
          worker.speed === null
            ? `worker ${worker.id} has not finished its first shard in ${Math.round((now - shard.sentAt) / 1000)} s (warm-up included)`
            : `worker ${worker.id} missed the deadline of ${this.label}`,
        );
      }
      this.reissue(shard, 'late');
    }
  }

  /** Ends the round now (the coordinator is stopping); `done` resolves false. */
  cancel(): void {
    this.finish(false);
  }

  /** Workers that hold a share of this round or have delivered one. */
  holders(): Set<string> {
    const ids = new Set(this.contributors);
    for (const shard of this.shards.values()) if (this.sink.isPending(shard.start)) ids.add(shard.workerId);
    return ids;
  }

  /** Shards sent and not yet answered. */
  pending(): RoundShard[] {
    return [...this.shards.values()].filter((s) => this.sink.isPending(s.start));
  }

  /** Ranges waiting for a worker to join. */
  get waiting(): readonly { start: number; end: number }[] {
    return this.orphans;
  }

  private pendingOf(workerId: string): RoundShard[] {
    return this.pending().filter((s) => s.workerId === workerId);
  }

  private reissue(shard: RoundShard, why: 'left' | 'late'): void {
    if (this.settled) return;
    const others = this.port.ready().filter((w) => w.id !== shard.workerId);
    const busy = new Set(this.pending().map((s) => s.workerId));
    const idle = others.filter((w) => !busy.has(w.id));
    if (why === 'late' && idle.length === 0) return;
    this.sink.withdraw(shard.start);
    this.shards.delete(shard.id);
    this.port.reissued();
    this.port.event(
      'reissue',
      `shard [${shard.start}, ${shard.end}) of ${this.label} re-issued: worker ${shard.workerId} ${why === 'left' ? 'left' : 'missed its deadline'}`,
    );
    this.assign(shard.start, shard.end, idle.length ? idle : others);
  }

  private assign(start: number, end: number, workers: readonly WorkerRecord[]): void {
    if (workers.length === 0) {
      this.orphans.push({ start, end });
      return;
    }
    // A worker computes what it is sent in order, so a piece waits behind those queued before
    // it: its deadline is for all of them (an evaluation sends a worker dozens of pieces at
    // once, and a deadline for the piece alone made every later one late).
    const queued = new Map<string, number>();
    for (const s of this.pending()) queued.set(s.workerId, (queued.get(s.workerId) ?? 0) + s.end - s.start);
    for (const plan of this.plan(start, end, workers)) {
      const worker = this.port.worker(plan.workerId);
      if (!worker) throw new Error(`planned a shard for unknown worker ${plan.workerId}`);
      const now = this.port.now();
      const ahead = (queued.get(worker.id) ?? 0) + plan.end - plan.start;
      queued.set(worker.id, ahead);
      const shard: RoundShard = {
        id: this.port.nextShardId(),
        workerId: worker.id,
        start: plan.start,
        end: plan.end,
        sentAt: now,
        deadline: now + this.port.deadlineFor(worker, ahead),
      };
      this.sink.expect(shard.start, shard.end);
      this.shards.set(shard.id, shard);
      expectReply(worker, shard.id);
      this.port.send(worker, shard);
    }
  }

  private finish(complete: boolean): void {
    if (this.settled) return;
    this.settled = true;
    this.settle(complete);
  }
}
