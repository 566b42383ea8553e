import { createRng, type Cifar10 } from '@chorus/data';
import { buildGraph, weightLayout, type WeightLayout } from '@chorus/model/core';
import { EXAMPLE_BYTES, LowRankPlan, PROTOCOL_VERSION, PublicWeights, encodeMessage, getGradientCodec, sideOfStep, type EvalRecord, type GradientCodec, type RunUpdate, type Status, type Update, type WorkerFeature } from '@chorus/protocol';
import { MasterState } from '@chorus/train/core';
import type { Connection } from '../http/connection.js';
import type { Logger } from '../ops/logger.js';
import type { ChorusMetrics } from '../ops/metrics.js';
import { RunLog, type RunHistory } from '../ops/run-log.js';
import { buildStatus, etaSeconds, hashParams } from '../ops/status.js';
import { loadRunCheckpoint, type CheckpointStore } from '../store/checkpoint.js';
import type { EvalShardResult } from './eval-tally.js';
import { Fleet } from './fleet.js';
import type { Membership, WorkerRecord } from './membership.js';
import { ReductionBuffers, type ReducibleShard, type StepReducer } from './reducer.js';
import { codecOf, configFingerprint, type RunConfig, type RunOptions } from './run-config.js';
import { evaluationRound, trainingRound, type SharedPort } from './rounds.js';
import type { ShardRound } from './shard-round.js';
import { stepRecord, type Arrival } from './step-record.js';
import { UpdateFrames } from './update-frames.js';

export type { EvalRecord, RunEvent, StepBreakdown, StepRecord } from '@chorus/protocol';
export type { Refusal } from './fleet.js';

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

/** The training step in flight: its round, and what the step's report needs. */
interface TrainingStep {
  step: number;
  round: ShardRound<ReducibleShard>;
  reducer: StepReducer;
  arrivals: Arrival[];
}

/** How often deadlines and heartbeats are checked. */
const TICK_MS = 250;

/**
 * The run as a loop: wait for workers, run a round of shards for the step, apply the update,
 * report; now and then an evaluation round and a checkpoint. The rounds (shard-round.ts) deal
 * with faults inside a step, MasterState (@chorus/train) with the arithmetic, RunLog with what
 * people see, the Fleet with the workers. Sockets are the server's job: it hands each worker's
 * messages to the fleet.
 */
export class Coordinator {
  readonly config: RunConfig;
  readonly options: RunOptions;
  readonly layout: WeightLayout;
  readonly history: RunLog;
  /** The workers: admission, their messages, departures (the server talks to it). */
  readonly fleet: Fleet;
  /** The run's codec, for gradients up and updates down. */
  readonly codec: GradientCodec;
  /**
   * Low-rank runs (--low-rank): the plan and the fixed factors of the step at `step`, advanced by
   * every applied step and sent with every update; null otherwise.
   */
  readonly lowRank: { plan: LowRankPlan; factors: Float32Array } | null;
  private readonly master: MasterState;
  /**
   * Under fp16 and int8, the weights every worker holds (and computes its gradients at): each
   * update is a compressed delta toward the master, applied here exactly as the workers apply
   * it. Null under fp32, where updates carry the master weights themselves.
   */
  private publicWeights: PublicWeights | null;
  private readonly deps: CoordinatorDeps;
  private readonly now: () => number;
  /** The sum and mean of every step's reduction, reused (one step is reduced at a time). */
  private readonly reduction: ReductionBuffers;
  private readonly updateFrames = new UpdateFrames();
  /**
   * How much a worker's socket may still hold, not yet handed to the kernel, when the next
   * update is due: two full-weight updates and a little. Past it the worker's link is slower
   * than the run and it sits out until it drains (Fleet.updateSinks).
   */
  private readonly lagLimitBytes: number;
  /** The last update's size: a socket holding more than it (and a margin) has a backlog (Membership.assignable). */
  private lastUpdateBytes = Infinity;
  /** The margin: a whole batch's images (an assignment's at most) and the messages around them. */
  private readonly assignMarginBytes: number;
  private hashed: { step: number; hash: string } | null = null;
  private training: TrainingStep | null = null;
  private evaluation: ShardRound<EvalShardResult> | null = null;
  private nextShardId = 1;
  private nextEvalId = 1;
  private started = false;
  private stopped = false;
  private paused = false;
  private wake: (() => void) | null = null;
  private runStartedAt: number | null = null;

  constructor(deps: CoordinatorDeps) {
    this.deps = deps;
    this.config = deps.config;
    this.options = deps.options;
    this.now = deps.now ?? (() => performance.now());
    this.layout = weightLayout(buildGraph(deps.config.spec));
    this.lagLimitBytes = 2 * 4 * (this.layout.paramCount + this.layout.bnStatCount) + (1 << 20);
    this.assignMarginBytes = deps.config.batch * EXAMPLE_BYTES + (64 << 10);
    this.master = new MasterState(deps.config, this.layout, deps.data.train.count);
    this.reduction = new ReductionBuffers(this.layout.paramCount, this.master.gradientBuffer);
    this.codec = getGradientCodec(codecOf(deps.config));
    this.publicWeights = this.codec.name === 'fp32' ? null : new PublicWeights(this.codec, this.master.params);
    if (deps.config.lowRank !== undefined) {
      const plan = new LowRankPlan(this.layout.paramCount, this.layout.params, deps.config.lowRank);
      // A stream of its own from the run's seed, apart from the data order's.
      this.lowRank = { plan, factors: plan.initialFactors(createRng(deps.config.seed ^ 0x5eed10a7)) };
    } else {
      this.lowRank = null;
    }
    this.history = new RunLog(deps.log);
    this.fleet = new Fleet({
      token: deps.token,
      history: this.history,
      metrics: deps.metrics,
      batch: { size: deps.config.batch, bnGroup: deps.config.bnGroup },
      host: {
        now: () => this.now(),
        welcome: (conn, worker) => this.welcome(conn, worker),
        training: () => this.training,
        evaluation: () => this.evaluation,
        changed: () => this.poke(),
      },
    });
  }

  get membership(): Membership {
    return this.fleet.membership;
  }

  /** Completed steps: the version of the master weights. */
  get step(): number {
    return this.master.step;
  }

  /** The master weights (read-only: MasterState updates them in place). */
  get params(): Float32Array {
    return this.master.params;
  }

  get bnStats(): Float32Array {
    return this.master.bnStats;
  }

  /** The weights the workers hold: the master's under fp32, the public copy otherwise (read-only). */
  get workerParams(): Float32Array {
    return this.publicWeights?.weights ?? this.master.params;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Whether a training step is being computed now (a pause takes effect when it is not). */
  get stepInFlight(): boolean {
    return this.training !== null;
  }

  // ---------------------------------------------------------------- the loop

  /** Trains to the configured number of steps; resolves when done or stopped. */
  async run(): Promise<void> {
    const ticker = setInterval(() => this.tick(), TICK_MS);
    try {
      if (this.evaluationMissed()) await this.evaluate();
      while (this.step < this.config.steps && !this.stopped) {
        await this.waitUntilRunnable();
        if (this.stopped || !(await this.trainStep())) break;
        const { evalEvery, checkpointEvery } = this.options;
        if (evalEvery > 0 && this.step % evalEvery === 0 && this.step < this.config.steps) await this.evaluate();
        if (checkpointEvery > 0 && this.step % checkpointEvery === 0) await this.checkpoint();
      }
      if (!this.stopped && this.step >= this.config.steps) {
        await this.evaluate();
        await this.checkpoint();
        this.history.event('done', `training finished at step ${this.step}`);
      }
    } finally {
      clearInterval(ticker);
    }
  }

  /**
   * Whether the evaluation due at the current step is missing: a stop during it (a SIGTERM
   * mid-evaluation) checkpointed the step without it, so a run resumed there evaluates first.
   */
  private evaluationMissed(): boolean {
    const { evalEvery } = this.options;
    const due = evalEvery > 0 && this.step > 0 && this.step % evalEvery === 0 && this.step < this.config.steps;
    return due && !this.history.evals.some((e) => e.step === this.step);
  }

  stop(): void {
    this.stopped = true;
    this.training?.round.cancel();
    this.evaluation?.cancel();
    this.poke();
  }

  setPaused(paused: boolean): void {
    if (this.paused === paused) return;
    this.paused = paused;
    this.history.event(paused ? 'pause' : 'resume', paused ? 'training paused' : 'training resumed');
    this.poke();
  }

  /** One step: a round of shards over the ready workers, then the update. False if stopped. */
  private async trainStep(): Promise<boolean> {
    const step = this.step;
    const { round, reducer } = trainingRound({
      step,
      batch: this.master.batch(step),
      batchSize: this.config.batch,
      bnGroup: this.config.bnGroup,
      layout: this.layout,
      codec: this.codec,
      buffers: this.reduction,
      data: this.deps.data,
      port: this.port,
      ...(this.lowRank ? { lowRank: { plan: this.lowRank.plan, side: sideOfStep(step), factors: this.lowRank.factors } } : {}),
    });
    const current: TrainingStep = { step, round, reducer, arrivals: [] };
    this.training = current;
    this.runStartedAt ??= Date.now();
    round.start();
    const complete = await round.done;
    this.training = null;
    if (complete) this.applyStep(current);
    return complete;
  }

  /** The reduced gradient updates the master state; the new weights go to every worker. */
  private applyStep({ step, round, reducer, arrivals }: TrainingStep): void {
    const t0 = this.now();
    const totals = reducer.totals();
    // The mean projection, orthonormalised, is the next step's fixed factor (low-rank.ts).
    if (this.lowRank) this.lowRank.factors = this.lowRank.plan.nextFactors(totals.lowRankMean!, sideOfStep(step));
    const t1 = this.now();
    const lr = this.master.apply(totals.gradient, totals.bn.moments);
    const t2 = this.now();
    const ready = this.membership.ready();
    this.lastUpdateBytes = this.updateFrames.send(this.update(arrivals), this.fleet.updateSinks(this.lagLimitBytes)).byteLength;
    this.fleet.resyncDrained();
    const t3 = this.now();
    const record = stepRecord({ step: step + 1, lr, totals, arrivals, workers: ready.length, times: { startedAt: round.startedAt, reduceMs: round.sinkMs, t0, t1, t2, t3 } });
    this.history.step(record);
    this.deps.metrics.recordStep(record);
    if (!Number.isFinite(totals.loss)) this.history.event('diverged', `the loss is not finite at step ${this.step}`);
  }

  /**
   * The update of the version just completed: the master weights (fp32), or the public weights'
   * delta; and the shards it counted, so a worker whose gradient was not among them takes back
   * what its error feedback kept of it.
   */
  private update(arrivals: readonly Arrival[]): Update {
    const counted = Int32Array.from(arrivals, (a) => a.shardId);
    const head = { type: 'update', v: PROTOCOL_VERSION, version: this.step, bnStats: this.bnStats, counted, ...(this.lowRank ? { factors: this.lowRank.factors } : {}) } as const;
    if (!this.publicWeights) return { ...head, params: this.params };
    const { values, scales } = this.publicWeights.advance(this.params);
    return { ...head, delta: values, ...(scales ? { scales } : {}) };
  }

  /** Test-set accuracy with BatchNorm in inference mode, sharded over the workers like training. */
  async evaluate(): Promise<EvalRecord | null> {
    const count = Math.min(this.options.evalExamples, this.deps.data.test.count);
    if (count === 0) return null;
    await this.waitUntilRunnable();
    if (this.stopped) return null;
    const evalId = this.nextEvalId++;
    const { round, tally } = evaluationRound({ evalId, version: this.step, count, pieceSize: this.config.batch, data: this.deps.data, port: this.port });
    this.evaluation = round;
    round.start();
    const complete = await round.done;
    this.evaluation = null;
    if (!complete) return null;
    const record = { step: this.step, accuracy: tally.correct / count, loss: tally.lossSum / count, count };
    this.history.eval(record);
    this.deps.metrics.testAccuracy.set(record.accuracy);
    this.history.event('eval', `test accuracy ${(100 * record.accuracy).toFixed(2)}% at step ${this.step} (${count} images)`);
    return record;
  }

  private async waitUntilRunnable(): Promise<void> {
    for (;;) {
      const ready = this.assignable().length;
      const needed = this.started ? 1 : this.options.minWorkers;
      if (this.stopped || (!this.paused && ready >= needed)) break;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    this.started = true;
  }

  /** Workers shards go to now (Membership.assignable), a margin over the last update allowed. */
  private assignable(): WorkerRecord[] {
    return this.membership.assignable(this.lastUpdateBytes + this.assignMarginBytes);
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** Heartbeats and deadlines, on the coordinator's clock. */
  private tick(): void {
    const now = this.now();
    this.fleet.dropSilent(now, this.options.heartbeatTimeoutMs);
    this.fleet.resyncDrained();
    // A worker whose backlog has left can take the ranges nobody could, and start a waiting run.
    if (this.assignable().length > 0) {
      this.training?.round.workerJoined();
      this.evaluation?.workerJoined();
      this.poke();
    }
    this.training?.round.tick(now);
    this.evaluation?.tick(now);
  }

  /** What both kinds of round share: the workers, the clock, shard ids, deadlines, events. */
  private readonly port: SharedPort = {
    ready: () => this.assignable(),
    worker: (id) => this.membership.get(id),
    now: () => this.now(),
    nextShardId: () => this.nextShardId++,
    deadlineFor: (worker, count) => this.deadlineFor(worker, count),
    event: (kind, message) => this.history.event(kind, message),
    reissued: () => this.deps.metrics.shardsReissued.inc(),
  };

  /**
   * Why a worker whose hello lists `features` cannot take part in this run, or null when it
   * can: a low-rank run needs workers that send projections and follow the factors.
   */
  unmetFeature(features: readonly string[] | undefined): string | null {
    const needed: WorkerFeature = 'low-rank';
    if (!this.lowRank || features?.includes(needed)) return null;
    // Short: the reason travels in a close frame (at most 123 bytes).
    return `this run sends low-rank gradients (--low-rank ${this.lowRank.plan.rank}); this worker's build does not: update it`;
  }

  private welcome(conn: Connection, worker: WorkerRecord): void {
    const { preset, spec, bnGroup } = this.config;
    const { paramCount, bnStatCount } = this.layout;
    conn.send({
      type: 'welcome',
      v: PROTOCOL_VERSION,
      workerId: worker.id,
      run: { preset, spec, paramCount, bnStatCount, bnGroup, codec: this.codec.name, ...(this.lowRank ? { lowRank: this.lowRank.plan.rank } : {}), heartbeatMs: this.options.heartbeatMs },
      version: this.step,
      ...(this.lowRank ? { factors: this.lowRank.factors } : {}),
      // A joiner gets the public weights in full: the ones the others hold, bit for bit.
      params: this.workerParams,
      bnStats: this.bnStats,
    });
  }

  /** A multiple of the worker's expected time, never below the floor; its first shard also pays for warm-up. */
  private deadlineFor(worker: WorkerRecord, count: number): number {
    if (worker.speed === null) return Math.max(this.options.minDeadlineMs, this.options.firstShardDeadlineMs);
    return Math.max(this.options.minDeadlineMs, (3 * count * 1000) / worker.speed + 1000);
  }

  // ---------------------------------------------------------------- state and reporting

  /** Continues from a checkpoint; refuses one that belongs to a different run. */
  async resume(): Promise<boolean> {
    const store = this.deps.checkpoints;
    if (!store) throw new Error('--resume needs a checkpoint directory');
    const state = await loadRunCheckpoint(store, configFingerprint(this.config));
    if (!state) return false;
    if (this.publicWeights) {
      // Exact resume needs the weights the workers held, not a fresh copy of the master's.
      if (!state.publicParams) throw new Error(`the checkpoint at step ${state.step} has no public weights, which a ${this.codec.name} run needs to resume exactly`);
      if (state.publicParams.length !== this.layout.paramCount) throw new Error(`the checkpoint's public weights have ${state.publicParams.length} values; the model has ${this.layout.paramCount}`);
    }
    if (this.lowRank) {
      const expected = this.lowRank.plan.factorLength(sideOfStep(state.step));
      if (state.lowRankFactors?.length !== expected) throw new Error(`the checkpoint at step ${state.step} has ${state.lowRankFactors?.length ?? 'no'} low-rank factor values; this run needs ${expected} to resume exactly`);
    }
    this.master.restore(state);
    if (this.lowRank) this.lowRank.factors = state.lowRankFactors!.slice();
    this.hashed = null;
    if (this.publicWeights) this.publicWeights = new PublicWeights(this.codec, state.publicParams!);
    this.history.restore(state.history as Partial<RunHistory> | undefined);
    this.history.event('resume', `resumed from the checkpoint at step ${state.step}`);
    this.deps.metrics.step.set(this.step);
    return true;
  }

  async checkpoint(): Promise<string | null> {
    const store = this.deps.checkpoints;
    if (!store) return null;
    const publicParams = this.publicWeights ? { publicParams: this.publicWeights.weights.slice() } : {};
    const lowRankFactors = this.lowRank ? { lowRankFactors: this.lowRank.factors.slice() } : {};
    const path = await store.save({ ...this.master.snapshot(), ...publicParams, ...lowRankFactors, config: configFingerprint(this.config), history: this.history.forCheckpoint() });
    this.history.event('checkpoint', `checkpoint at step ${this.step}`, { path });
    return path;
  }

  /**
   * SHA-256 of the master weights, for the status (clients compare replicas by it). Hashed once
   * per weights version: a dashboard or script polling /api/status would otherwise hash 2.3 MB
   * per request.
   */
  paramsHash(): string {
    if (this.hashed?.step !== this.step) this.hashed = { step: this.step, hash: hashParams(this.params) };
    return this.hashed.hash;
  }

  /** Live feed of steps, evaluations and events (the dashboard's monitor socket). */
  subscribe(listener: (message: RunUpdate) => void): () => void {
    return this.history.subscribe(listener);
  }

  etaSeconds(): number | null {
    return etaSeconds(this.history, this.step, this.config.steps);
  }

  status(): Status {
    return buildStatus({
      config: this.config,
      paramCount: this.layout.paramCount,
      step: this.step,
      epoch: this.step > 0 ? this.master.epochOf(this.step - 1) : 0,
      paused: this.paused,
      paramsHash: this.paramsHash(),
      runStartedAt: this.runStartedAt,
      history: this.history,
      workers: this.membership.all(),
      round: this.training?.round ?? null,
      shortage: this.fleet.shareShortage(),
      assignable: this.assignable(),
    });
  }
}
