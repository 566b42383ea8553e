import { timingSafeEqual, createHash } from 'node:crypto';
import { EpochSampler, gatherExamples, hash32, type Cifar10 } from '@chorus/data';
import { BN_MOMENTUM, buildGraph, initialBnStats, initialParams, weightLayout, type WeightLayout } from '@chorus/model';
import {
  CLOSE_CODES,
  PROTOCOL_VERSION,
  encodeMessage,
  type EvalResult,
  type GradientMessage,
  type Hello,
  type Message,
  type EvalRecord,
  type ErrorCode,
  type RunEvent,
  type RunUpdate,
  type Status,
  type StepBreakdown,
  type StepRecord,
} from '@chorus/protocol';
import { createOptimizer, learningRate, scheduleOf, updateRunningStats, type Optimizer } from '@chorus/train';
import type { CheckpointStore } from '../store/checkpoint.js';
import type { Connection } from '../http/connection.js';
import type { Logger } from '../ops/logger.js';
import { Membership, expectReply, type WorkerRecord } from './membership.js';
import type { ChorusMetrics } from '../ops/metrics.js';
import { StepReducer } from './reducer.js';
import { configFingerprint, type RunConfig, type RunOptions } from './run-config.js';
import { planShards } from './scheduler.js';

interface ShardInFlight {
  id: number;
  workerId: string;
  start: number;
  end: number;
  sentAt: number;
  deadline: number;
}

interface StepInFlight {
  step: number;
  indices: Int32Array;
  augmentSeed: number;
  reducer: StepReducer;
  shards: Map<number, ShardInFlight>;
  /** Ranges no worker could take yet (everyone left): assigned to the next worker to join. */
  orphans: { start: number; end: number }[];
  startedAt: number;
  arrivals: { workerId: string; count: number; sentAt: number; arrivedAt: number; computeMs: number }[];
  reduceMs: number;
  done: () => void;
}

interface EvalInFlight {
  evalId: number;
  count: number;
  shards: Map<number, { id: number; workerId: string; start: number; end: number }>;
  orphans: { start: number; end: number }[];
  lossSum: number;
  correct: number;
  received: number;
  done: () => void;
}

export type { EvalRecord, RunEvent, StepBreakdown, StepRecord } from '@chorus/protocol';

/** Why a message from an admitted worker is refused; the server answers and closes that connection. */
export interface Refusal {
  code: ErrorCode;
  message: string;
}

export interface CoordinatorDeps {
  config: RunConfig;
  options: RunOptions;
  data: Cifar10;
  token: string;
  log: Logger;
  metrics: ChorusMetrics;
  checkpoints?: CheckpointStore;
  now?: () => number;
}

/**
 * The run: master weights, optimizer, BatchNorm statistics, and the loop that turns each step
 * into shards, collects them exactly once whatever happens to the workers, and applies the
 * update. Sockets are somebody else's job (server.ts hands messages in).
 */
export class Coordinator {
  readonly config: RunConfig;
  readonly options: RunOptions;
  readonly layout: WeightLayout;
  readonly membership = new Membership();
  readonly history: { steps: StepRecord[]; evals: EvalRecord[]; events: RunEvent[] } = { steps: [], evals: [], events: [] };
  step = 0;
  params: Float32Array;
  bnStats: Float32Array;
  private readonly optimizer: Optimizer;
  private readonly sampler: EpochSampler;
  private readonly deps: CoordinatorDeps;
  private readonly now: () => number;
  private current: StepInFlight | null = null;
  private currentEval: EvalInFlight | null = null;
  private nextShardId = 1;
  private nextEvalId = 1;
  private started = false;
  private stopped = false;
  private paused = false;
  private wake: (() => void) | null = null;
  private sweeper: ReturnType<typeof setInterval> | null = null;
  private readonly tokenDigest: Buffer;
  private readonly listeners = new Set<(message: RunUpdate) => void>();
  private runStartedAt: number | null = null;
  /** The share shortage last reported, so it is said once when it starts, not at every join. */
  private reportedShortage = false;

  constructor(deps: CoordinatorDeps) {
    this.deps = deps;
    this.config = deps.config;
    this.options = deps.options;
    this.now = deps.now ?? (() => performance.now());
    this.tokenDigest = createHash('sha256').update(deps.token).digest();
    this.layout = weightLayout(buildGraph(deps.config.spec));
    this.params = initialParams(this.layout, deps.config.seed);
    this.bnStats = initialBnStats(this.layout);
    this.optimizer = createOptimizer(deps.config.optimizer, this.layout, { weightDecay: deps.config.weightDecay });
    this.sampler = new EpochSampler({ datasetSize: deps.data.train.count, globalBatch: deps.config.batch, seed: deps.config.seed });
  }

  // ---------------------------------------------------------------- state, resume, events

  /** Continues from a checkpoint; refuses one that belongs to a different run. */
  async resume(): Promise<boolean> {
    const store = this.deps.checkpoints;
    if (!store) throw new Error('--resume needs a checkpoint directory');
    const state = await store.loadLatest();
    if (!state) return false;
    const expected = JSON.stringify(configFingerprint(this.config));
    const found = JSON.stringify(state.config);
    if (expected !== found) {
      throw new Error(`the checkpoint at step ${state.step} belongs to a different run configuration:\n  checkpoint: ${found}\n  this run:   ${expected}`);
    }
    this.step = state.step;
    this.params = state.params;
    this.bnStats = state.bnStats;
    this.optimizer.load(state.optimizer);
    const history = state.history as Coordinator['history'] | undefined;
    if (history?.steps) Object.assign(this.history, history);
    this.event('resume', `resumed from the checkpoint at step ${state.step}`);
    this.deps.metrics.step.set(this.step);
    return true;
  }

  async checkpoint(): Promise<string | null> {
    const store = this.deps.checkpoints;
    if (!store) return null;
    const path = await store.save({
      step: this.step,
      params: this.params,
      bnStats: this.bnStats,
      optimizer: this.optimizer.state(),
      config: configFingerprint(this.config),
      history: { steps: this.history.steps.slice(-2000), evals: this.history.evals, events: this.history.events.slice(-500) },
    });
    this.event('checkpoint', `checkpoint at step ${this.step}`, { path });
    return path;
  }

  paramsHash(): string {
    return createHash('sha256').update(new Uint8Array(this.params.buffer, this.params.byteOffset, this.params.byteLength)).digest('hex');
  }

  /** Live feed of steps, evaluations and events (the dashboard's monitor socket). */
  subscribe(listener: (message: RunUpdate) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(message: RunUpdate): void {
    for (const listener of this.listeners) {
      try {
        listener(message);
      } catch (error) {
        this.deps.log.warn('monitor listener failed', { error: (error as Error).message });
      }
    }
  }

  /**
   * Checks a join or control token in constant time: both sides are hashed first, so neither
   * the comparison nor the length check tells a guesser how much of its guess was right.
   */
  checkToken(token: string): boolean {
    const digest = (text: string | Buffer) => createHash('sha256').update(text).digest();
    return timingSafeEqual(digest(token), this.tokenDigest);
  }

  private event(kind: string, message: string, fields: Record<string, string | number> = {}): void {
    const entry = { time: Date.now(), kind, message };
    this.history.events.push(entry);
    this.emit({ type: 'event', event: entry });
    if (this.history.events.length > 5000) this.history.events.splice(0, 1000);
    this.deps.log.info(message, { event: kind, ...fields });
  }

  setPaused(paused: boolean): void {
    if (this.paused === paused) return;
    this.paused = paused;
    this.event(paused ? 'pause' : 'resume', paused ? 'training paused' : 'training resumed');
    this.poke();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Whether a training step is being computed now (a pause takes effect when it is not). */
  get stepInFlight(): boolean {
    return this.current !== null;
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  // ---------------------------------------------------------------- connections

  /** A hello whose token the server has checked (checkToken): admit, send the weights. */
  admit(conn: Connection, hello: Hello): WorkerRecord {
    const worker = this.membership.join(hello.runtime, conn, this.now(), hello.workerId);
    conn.send({
      type: 'welcome',
      v: PROTOCOL_VERSION,
      workerId: worker.id,
      run: {
        preset: this.config.preset,
        spec: this.config.spec,
        paramCount: this.layout.paramCount,
        bnStatCount: this.layout.bnStatCount,
        bnGroup: this.config.bnGroup,
        codec: 'fp32',
        heartbeatMs: this.options.heartbeatMs,
      },
      version: this.step,
      params: this.params,
      bnStats: this.bnStats,
    });
    const r = hello.runtime;
    this.event('join', `worker ${worker.id} joined (${r.kind}, ${r.backend}, ${r.device})`, { worker: worker.id });
    this.deps.metrics.workers.set(this.membership.ready().length);
    this.reportShortage();
    this.assignOrphans();
    this.poke();
    return worker;
  }

  /** A validated message from an admitted worker; a refusal means the server must close it. */
  receive(worker: WorkerRecord, message: Message): Refusal | null {
    worker.lastSeen = this.now();
    switch (message.type) {
      case 'gradient':
        return this.onGradient(worker, message);
      case 'evalResult':
        return this.onEvalResult(worker, message);
      case 'heartbeat':
        if (message.hidden !== undefined && message.hidden !== worker.hidden) {
          worker.hidden = message.hidden;
          this.event('throttle', `worker ${worker.id} is ${message.hidden ? 'hidden (throttled)' : 'visible again'}`);
        }
        break;
      case 'bye':
        this.depart(worker, `left: ${message.reason}`);
        worker.conn?.close(CLOSE_CODES.normal, 'bye');
        break;
      default:
        return { code: 'malformed', message: `a worker may not send '${message.type}'` };
    }
    return null;
  }

  /**
   * Records a refused message (the server closes the connection). `quiet` counts it without an
   * event or log line: the server's choice while a flood of refusals comes from strangers.
   */
  refused(reason: string, detail: string, workerId?: string, options: { quiet?: boolean } = {}): void {
    this.deps.metrics.messagesRefused.inc({ reason });
    if (!options.quiet) this.event('refused', `refused a message${workerId ? ` from ${workerId}` : ''}: ${detail}`, { reason });
  }

  /** The worker's connection is gone (closed, killed, timed out). */
  depart(worker: WorkerRecord, reason: string): void {
    if (!this.membership.leave(worker.id, reason)) return;
    this.event('leave', `worker ${worker.id} ${reason}`, { worker: worker.id });
    this.deps.metrics.workers.set(this.membership.ready().length);
    this.reportShortage();
    this.deps.metrics.removeWorker(worker.id);
    this.reissueFrom(worker.id, 'left');
    this.reissueEvalFrom(worker.id);
  }

  // ---------------------------------------------------------------- the loop

  /** Trains to the configured number of steps; resolves when done or stopped. */
  async run(): Promise<void> {
    this.sweeper = setInterval(() => this.sweep(), 250);
    try {
      while (this.step < this.config.steps && !this.stopped) {
        await this.waitUntilRunnable();
        if (this.stopped) break;
        await this.runStep();
        if (this.stopped) break;
        const { evalEvery, checkpointEvery } = this.options;
        if (evalEvery > 0 && this.step % evalEvery === 0 && this.step < this.config.steps) await this.evaluate();
        if (checkpointEvery > 0 && this.step % checkpointEvery === 0) await this.checkpoint();
      }
      if (!this.stopped && this.step >= this.config.steps) {
        await this.evaluate();
        await this.checkpoint();
        this.event('done', `training finished at step ${this.step}`);
      }
    } finally {
      if (this.sweeper) clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  stop(): void {
    this.stopped = true;
    this.current?.done();
    this.currentEval?.done();
    this.poke();
  }

  private async waitUntilRunnable(): Promise<void> {
    for (;;) {
      const ready = this.membership.ready().length;
      const needed = this.started ? 1 : this.options.minWorkers;
      if (this.stopped || (!this.paused && ready >= needed)) break;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    this.started = true;
  }

  private runStep(): Promise<void> {
    const step = this.step;
    return new Promise<void>((resolve) => {
      const current: StepInFlight = {
        step,
        indices: this.sampler.indicesForStep(step),
        augmentSeed: this.config.augment ? hash32(this.config.seed, step) : -1,
        reducer: new StepReducer(this.layout, this.config.batch),
        shards: new Map(),
        orphans: [],
        startedAt: this.now(),
        arrivals: [],
        reduceMs: 0,
        done: resolve,
      };
      this.runStartedAt ??= Date.now();
      this.current = current;
      this.assignRange(current, 0, this.config.batch, this.membership.ready());
    }).then(() => {
      this.current = null;
    });
  }

  /** The deadline for a shard: a multiple of the worker's expected time, never below the floor. */
  private deadlineFor(worker: WorkerRecord, count: number): number {
    if (worker.speed === null) return Math.max(this.options.minDeadlineMs, this.options.firstShardDeadlineMs);
    const expected = (count * 1000) / worker.speed;
    return Math.max(this.options.minDeadlineMs, 3 * expected + 1000);
  }

  private assignRange(current: StepInFlight, start: number, end: number, workers: WorkerRecord[]): void {
    if (workers.length === 0) {
      current.orphans.push({ start, end });
      return;
    }
    const known = workers.map((w) => w.speed).filter((s): s is number => s !== null);
    const fallback = known.length ? known.sort((a, b) => a - b)[Math.floor(known.length / 2)] : 1;
    const plans = planShards(
      start,
      end,
      // A hidden (throttled) tab gets a token share until it is visible again.
      workers.map((w) => ({ id: w.id, imagesPerSecond: (w.speed ?? fallback) * (w.hidden ? 0.05 : 1) })),
      { bnGroup: this.config.bnGroup, minGroups: 1 },
    );
    for (const plan of plans) {
      const worker = this.membership.get(plan.workerId)!;
      const count = plan.end - plan.start;
      const indices = current.indices.subarray(plan.start, plan.end);
      const { pixels, labels } = gatherExamples(this.deps.data.train, indices);
      current.reducer.expect(plan.start, plan.end);
      const shard: ShardInFlight = {
        id: this.nextShardId++,
        workerId: worker.id,
        start: plan.start,
        end: plan.end,
        sentAt: this.now(),
        deadline: this.now() + this.deadlineFor(worker, count),
      };
      current.shards.set(shard.id, shard);
      expectReply(worker, shard.id);
      worker.conn?.send({
        type: 'assign',
        v: PROTOCOL_VERSION,
        step: current.step,
        version: this.step,
        shardId: shard.id,
        indices,
        labels,
        pixels,
        augmentSeed: current.augmentSeed,
      });
    }
  }

  private assignOrphans(): void {
    const current = this.current;
    if (current && current.orphans.length) {
      const orphans = current.orphans.splice(0);
      for (const o of orphans) {
        this.deps.metrics.shardsReissued.inc();
        this.assignRange(current, o.start, o.end, this.membership.ready());
      }
    }
    const ev = this.currentEval;
    if (ev && ev.orphans.length) {
      for (const o of ev.orphans.splice(0)) this.assignEvalRange(ev, o.start, o.end, this.membership.ready());
    }
  }

  /** Moves every pending shard of `workerId` to other workers (idle ones first). */
  private reissueFrom(workerId: string, why: 'left' | 'late'): void {
    const current = this.current;
    if (!current) return;
    for (const shard of [...current.shards.values()]) {
      if (shard.workerId !== workerId || !current.reducer.isPending(shard.start)) continue;
      const others = this.membership.ready().filter((w) => w.id !== workerId);
      const busy = new Set([...current.shards.values()].filter((s) => current.reducer.isPending(s.start)).map((s) => s.workerId));
      const idle = others.filter((w) => !busy.has(w.id));
      if (why === 'late' && idle.length === 0) continue; // nobody free: keep waiting for the straggler
      current.reducer.withdraw(shard.start);
      current.shards.delete(shard.id);
      this.deps.metrics.shardsReissued.inc();
      this.event('reissue', `shard [${shard.start}, ${shard.end}) of step ${current.step} re-issued: worker ${workerId} ${why === 'left' ? 'left' : 'missed its deadline'}`);
      this.assignRange(current, shard.start, shard.end, idle.length ? idle : others);
    }
  }

  private sweep(): void {
    const now = this.now();
    for (const worker of this.membership.silent(now, this.options.heartbeatTimeoutMs)) {
      worker.conn?.terminate();
      this.depart(worker, `timed out (silent for ${Math.round((now - worker.lastSeen) / 1000)} s)`);
    }
    const current = this.current;
    if (!current) return;
    for (const shard of [...current.shards.values()]) {
      if (now > shard.deadline && current.reducer.isPending(shard.start)) {
        const worker = this.membership.get(shard.workerId);
        if (worker && worker.speed === null && !worker.straggling) {
          // Still on its first shard: slow warm-up, not (yet) a straggler.
          worker.straggling = true;
          this.event('straggler', `worker ${worker.id} has not finished its first shard in ${Math.round((now - shard.sentAt) / 1000)} s (warm-up included)`);
        } else if (worker && !worker.straggling) {
          worker.straggling = true;
          this.event('straggler', `worker ${worker.id} missed the deadline of step ${current.step}`);
        }
        this.reissueFrom(shard.workerId, 'late');
      }
    }
  }

  private onGradient(worker: WorkerRecord, message: GradientMessage): Refusal | null {
    const current = this.current;
    const shard = current?.shards.get(message.shardId);
    if (!worker.awaiting.delete(message.shardId)) {
      return { code: 'bad-gradient', message: `a gradient for shard ${message.shardId}, which was never assigned to this worker or was answered already` };
    }
    if (!current || !shard || message.step !== current.step) {
      this.deps.log.info('dropped a late or duplicate gradient', { worker: worker.id, step: message.step, shard: message.shardId });
      return null;
    }
    if (message.count !== shard.end - shard.start) {
      return { code: 'bad-gradient', message: `shard ${shard.id} has ${shard.end - shard.start} examples, the gradient says ${message.count}` };
    }
    const arrivedAt = this.now();
    const accepted = current.reducer.accept(shard.start, shard.end, {
      count: message.count,
      lossSum: message.lossSum,
      correct: message.correct,
      gradient: message.gradient,
      bnMoments: message.bnMoments,
    });
    current.reduceMs += this.now() - arrivedAt;
    current.shards.delete(shard.id);
    if (!accepted) return null;
    current.arrivals.push({ workerId: worker.id, count: message.count, sentAt: shard.sentAt, arrivedAt, computeMs: message.computeMs });
    const latency = arrivedAt - shard.sentAt;
    this.membership.recordShard(worker, message.count, latency, message.computeMs);
    worker.straggling = false;
    this.deps.metrics.setWorkerImagesPerSecond(worker.id, worker.runtime.backend, worker.speed ?? 0);
    if (current.reducer.complete) this.finishStep(current);
    return null;
  }

  private finishStep(current: StepInFlight): void {
    const t0 = this.now();
    const totals = current.reducer.totals();
    const t1 = this.now();
    const lr = learningRate(scheduleOf(this.config), current.step);
    this.optimizer.apply(this.params, totals.gradient, lr);
    updateRunningStats(this.bnStats, totals.bn.moments, BN_MOMENTUM);
    const t2 = this.now();
    this.step = current.step + 1;
    // One encoding for everyone: the frame is identical for all workers.
    const frame = encodeMessage({ type: 'update', v: PROTOCOL_VERSION, version: this.step, params: this.params, bnStats: this.bnStats });
    const ready = this.membership.ready();
    for (const w of ready) w.conn?.sendFrame(frame);
    const t3 = this.now();
    const seconds = (t3 - current.startedAt) / 1000;
    const arrivals = current.arrivals;
    const last = arrivals.reduce((a, b) => (b.arrivedAt > a.arrivedAt ? b : a), arrivals[0]);
    const first = arrivals.reduce((a, b) => (b.arrivedAt < a.arrivedAt ? b : a), arrivals[0]);
    const perWorkerCount = new Map<string, { count: number; ms: number }>();
    for (const a of arrivals) {
      const w = perWorkerCount.get(a.workerId) ?? { count: 0, ms: 0 };
      w.count += a.count;
      w.ms = Math.max(w.ms, a.arrivedAt - a.sentAt);
      perWorkerCount.set(a.workerId, w);
    }
    const breakdown: StepBreakdown = {
      computeMs: last.computeMs,
      transferMs: Math.max(0, last.arrivedAt - last.sentAt - last.computeMs),
      waitMs: last.arrivedAt - first.arrivedAt,
      reduceMs: current.reduceMs + (t1 - t0),
      optimizerMs: t2 - t1,
      broadcastMs: t3 - t2,
    };
    const record: StepRecord = {
      step: this.step,
      loss: totals.loss,
      accuracy: totals.accuracy,
      lr,
      seconds,
      imagesPerSecond: totals.count / seconds,
      workers: ready.length,
      examples: totals.examples,
      shards: totals.shards,
      time: Date.now(),
      perWorker: Object.fromEntries([...perWorkerCount].map(([id, w]) => [id, (w.count * 1000) / Math.max(1, w.ms)])),
      breakdown,
    };
    this.history.steps.push(record);
    this.emit({ type: 'step', step: record });
    if (this.history.steps.length > 20_000) this.history.steps.splice(0, 5_000);
    const m = this.deps.metrics;
    m.step.set(this.step);
    m.stepsTotal.inc();
    m.trainLoss.set(totals.loss);
    m.trainAccuracy.set(totals.accuracy);
    m.learningRate.set(lr);
    m.imagesPerSecond.set(record.imagesPerSecond);
    m.stepSeconds.observe(seconds);
    if (!Number.isFinite(totals.loss)) this.event('diverged', `the loss is not finite at step ${this.step}`);
    current.done();
  }

  // ---------------------------------------------------------------- evaluation

  /** Test-set accuracy with BatchNorm in inference mode, sharded over the workers like training. */
  async evaluate(): Promise<EvalRecord | null> {
    const count = Math.min(this.options.evalExamples, this.deps.data.test.count);
    if (count === 0) return null;
    await this.waitUntilRunnable();
    if (this.stopped) return null;
    const ev = await new Promise<EvalInFlight>((resolve) => {
      const round: EvalInFlight = {
        evalId: this.nextEvalId++,
        count,
        shards: new Map(),
        orphans: [],
        lossSum: 0,
        correct: 0,
        received: 0,
        done: () => resolve(round),
      };
      this.currentEval = round;
      this.assignEvalRange(round, 0, count, this.membership.ready());
    });
    this.currentEval = null;
    if (ev.received < ev.count) return null;
    const record = { step: this.step, accuracy: ev.correct / ev.count, loss: ev.lossSum / ev.count, count: ev.count };
    this.history.evals.push(record);
    this.emit({ type: 'eval', eval: record });
    this.deps.metrics.testAccuracy.set(record.accuracy);
    this.event('eval', `test accuracy ${(100 * record.accuracy).toFixed(2)}% at step ${this.step} (${count} images)`);
    return record;
  }

  private assignEvalRange(ev: EvalInFlight, start: number, end: number, workers: WorkerRecord[]): void {
    if (workers.length === 0) {
      ev.orphans.push({ start, end });
      return;
    }
    const plans = planShards(start, end, workers.map((w) => ({ id: w.id, imagesPerSecond: w.speed ?? 1 })), { bnGroup: 1, minGroups: 1 });
    // Pieces of at most one training batch: frames stay small and a lost worker loses little.
    const pieces = plans.flatMap((plan) => {
      const out: typeof plans = [];
      for (let s = plan.start; s < plan.end; s += this.config.batch) out.push({ ...plan, start: s, end: Math.min(plan.end, s + this.config.batch) });
      return out;
    });
    for (const plan of pieces) {
      const indices = Int32Array.from({ length: plan.end - plan.start }, (_, i) => plan.start + i);
      const { pixels, labels } = gatherExamples(this.deps.data.test, indices);
      const id = this.nextShardId++;
      ev.shards.set(id, { id, workerId: plan.workerId, start: plan.start, end: plan.end });
      const worker = this.membership.get(plan.workerId);
      if (worker) expectReply(worker, id);
      worker?.conn?.send({
        type: 'evaluate',
        v: PROTOCOL_VERSION,
        evalId: ev.evalId,
        shardId: id,
        version: this.step,
        labels,
        pixels,
      });
    }
  }

  private reissueEvalFrom(workerId: string): void {
    const ev = this.currentEval;
    if (!ev) return;
    for (const shard of [...ev.shards.values()]) {
      if (shard.workerId !== workerId) continue;
      ev.shards.delete(shard.id);
      this.assignEvalRange(ev, shard.start, shard.end, this.membership.ready());
    }
  }

  private onEvalResult(worker: WorkerRecord, message: EvalResult): Refusal | null {
    const ev = this.currentEval;
    const shard = ev?.shards.get(message.shardId);
    if (!worker.awaiting.delete(message.shardId)) {
      return { code: 'malformed', message: `an evaluation result for shard ${message.shardId}, which was never assigned to this worker or was answered already` };
    }
    if (!ev || !shard || message.evalId !== ev.evalId) return null;
    if (message.count !== shard.end - shard.start) {
      // Refused and closed: the shard goes back to the others when this worker departs.
      return { code: 'malformed', message: `evaluation shard ${shard.id} has ${shard.end - shard.start} examples, the result says ${message.count}` };
    }
    ev.shards.delete(shard.id);
    ev.lossSum += message.lossSum;
    ev.correct += message.correct;
    ev.received += message.count;
    if (ev.received === ev.count) ev.done();
    return null;
  }

  // ---------------------------------------------------------------- reporting

  /** Says once, when it begins, that more workers are ready than the batch has groups. */
  private reportShortage(): void {
    const shortage = this.shareShortage();
    if (shortage && !this.reportedShortage) this.event('idle', shortage);
    this.reportedShortage = shortage !== null;
  }

  /** Workers holding a share of the step in flight, or of the last step when none is. */
  private workersWithShares(): Set<string> {
    const current = this.current;
    if (current) return new Set([...[...current.shards.values()].map((s) => s.workerId), ...current.arrivals.map((a) => a.workerId)]);
    return new Set(Object.keys(this.history.steps.at(-1)?.perWorker ?? {}));
  }

  /**
   * Why the batch leaves ready workers without a share, or null when it does not have to:
   * shards are whole BatchNorm groups, so a batch of G groups feeds at most G workers.
   */
  shareShortage(ready = this.membership.ready().length): string | null {
    const groups = Math.ceil(this.config.batch / this.config.bnGroup);
    if (ready <= groups) return null;
    return `the batch of ${this.config.batch} is ${groups} BatchNorm group${groups === 1 ? '' : 's'} of ${this.config.bnGroup}, too few for ${ready} workers: the fastest ${groups} train, the others wait (raise --batch or lower --bn-group)`;
  }

  private workerState(w: WorkerRecord, sharing: Set<string>): { state: Status['workers'][number]['state']; idleReason?: string } {
    if (w.state === 'left') return { state: 'left' };
    if (w.hidden) return { state: 'throttled' };
    if (w.straggling) return { state: 'straggling' };
    if (sharing.has(w.id) || (!this.current && this.history.steps.length === 0)) return { state: 'training' };
    const shortage = this.shareShortage();
    if (shortage) return { state: 'idle', idleReason: `no share: ${shortage}` };
    return { state: 'idle', idleReason: w.joinedAt > (this.current?.startedAt ?? -Infinity) ? 'joined during this step: trains from the next one' : 'no share in this step' };
  }

  /** Remaining steps times the mean duration of the last 20 steps; null before any step. */
  etaSeconds(): number | null {
    const recent = this.history.steps.slice(-20);
    if (recent.length === 0) return null;
    const mean = recent.reduce((a, r) => a + r.seconds, 0) / recent.length;
    return Math.max(0, this.config.steps - this.step) * mean;
  }

  status(): Status {
    const last = this.history.steps.at(-1);
    const sharing = this.workersWithShares();
    return {
      preset: this.config.preset,
      paramCount: this.layout.paramCount,
      batch: this.config.batch,
      steps: this.config.steps,
      step: this.step,
      epoch: this.step > 0 ? this.sampler.epochOf(this.step - 1) : 0,
      paused: this.paused,
      lr: last?.lr ?? null,
      loss: last?.loss ?? null,
      accuracy: last?.accuracy ?? null,
      testAccuracy: this.history.evals.at(-1)?.accuracy ?? null,
      paramsHash: this.paramsHash(),
      elapsedSeconds: this.runStartedAt === null ? 0 : (Date.now() - this.runStartedAt) / 1000,
      etaSeconds: this.etaSeconds(),
      workers: this.membership.all().map((w) => ({
        id: w.id,
        kind: w.runtime.kind,
        backend: w.runtime.backend,
        device: w.runtime.device,
        ...this.workerState(w, sharing),
        imagesPerSecond: w.speed,
        lastLatencyMs: w.lastLatencyMs,
        lastShard: w.lastShard,
        shardsDone: w.shardsDone,
        imagesDone: w.imagesDone,
        bytesIn: w.conn?.bytesIn ?? null,
        bytesOut: w.conn?.bytesOut ?? null,
        backends: w.runtime.backends ?? [],
      })),
      events: this.history.events.slice(-200),
      recentSteps: this.history.steps.slice(-200),
    };
  }
}
