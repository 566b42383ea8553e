import type { ResNetV2Spec } from '@chorus/model';
import { Replica } from '@chorus/train';
import {
  CLOSE_CODES,
  PROTOCOL_VERSION,
  closeReason,
  WORKER_FEATURES,
  encodeMessage,
  frameType,
  parseMessage,
  type Assign,
  type Evaluate,
  type Message,
  type RunDescription,
  type ShardResult,
  type Update,
  type Welcome,
  type WorkerRuntime,
  backoffDelay,
  ErrorFeedback,
  LowRankFeedback,
  LowRankPlan,
  sideOfStep,
  applyDelta,
  getGradientCodec,
  type GradientCodec,
  type LogFields,
  type LogLevel,
} from '@chorus/protocol';
import { UncountedShards } from './uncounted-shards.js';
import { computeShard, type ShardComputer } from './compute-shard.js';
import { shardImages } from './shard-input.js';
import type { Connect, Transport } from './transport.js';

export interface WorkerClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realClock: WorkerClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export interface WorkerStatus {
  state: 'connecting' | 'ready' | 'training' | 'evaluating' | 'reconnecting' | 'stopped';
  workerId: string | null;
  version: number;
  stepsDone: number;
  lastLoss: number | null;
  lastShard: number;
  imagesPerSecond: number | null;
  error?: string;
}

export type WorkerLog = (level: LogLevel, message: string, fields?: LogFields) => void;

export interface WorkerOptions {
  url: string;
  token: string;
  connect: Connect;
  /** What this worker runs on; microBatch is the most examples it runs at once. */
  runtime: WorkerRuntime;
  /** Structured, as formatLogLine writes it: the host adds its own fields (which worker). */
  log?: WorkerLog;
  onStatus?: (status: WorkerStatus) => void;
  reconnect?: { initialMs: number; maxMs: number };
  /**
   * Test and benchmark knob: after computing a shard, wait (slowdown - 1) x the compute time,
   * so the worker behaves like a device `slowdown` times slower.
   */
  slowdown?: number;
  /** Browser tabs report whether they are hidden. */
  isHidden?: () => boolean;
  clock?: WorkerClock;
  /** Computes training shards instead of the worker's replica (Node: one replica per core). */
  shardComputer?: ShardComputer;
}

/** The heartbeat intervals a worker keeps to, whatever a welcome asks (ms). */
const HEARTBEAT_MIN_MS = 50;
const HEARTBEAT_MAX_MS = 30_000;

/** Close codes after which reconnecting cannot help. */
const FATAL_CLOSE_CODES: ReadonlySet<number> = new Set([CLOSE_CODES.badToken, CLOSE_CODES.badVersion, CLOSE_CODES.shutdown]);

/**
 * The whole worker, on any platform: join, receive weights, compute gradients and
 * evaluations of the shards it is assigned, apply updates, send heartbeats, reconnect with
 * back-off. It owns no optimizer: the coordinator's master weights are the only truth.
 */
export class ChorusWorker {
  private readonly options: WorkerOptions;
  private readonly clock: WorkerClock;
  private transport: Transport | null = null;
  private replica: Replica | null = null;
  private specJson = '';
  private run: RunDescription | null = null;
  private bnStats: Float32Array | null = null;
  private codec: GradientCodec | null = null;
  /** The public weights under a compressed codec (deltas are added to them); null under fp32. */
  private publicParams: Float32Array | null = null;
  /** Rounding the uplink loses, carried to the next shard; a welcome starts it again unless it may go on (mayKeepResidual). */
  private errorFeedback: ErrorFeedback | null = null;
  /** Low-rank runs: the plan, the uplink with its residual, and the fixed factors of the step at the held version. */
  private lowRank: { plan: LowRankPlan; feedback: LowRankFeedback; factors: Float32Array } | null = null;
  /** What the residual kept of each gradient sent, until the next update says whether it counted. */
  private readonly uncounted = new UncountedShards();
  /** The weights the replica holds, and a counter of their changes, for a shardComputer. */
  private params: Float32Array | null = null;
  private paramsVersion = 0;
  /** Set once the shardComputer has failed: the worker's own replica trains instead. */
  private shardComputerFailed = false;
  private queue: Promise<void> = Promise.resolve();
  /** Numbers the connections: what arrived on one is handled only while it is the one open. */
  private connections = 0;
  /** The number of the connection now open, or null between connections (and once this worker has begun closing it). */
  private liveConnection: number | null = null;
  /** The connection the last welcome was joined on. */
  private welcomedOn: number | null = null;
  /**
   * Rejoins this worker asked for itself (an update it could not apply) since it last applied
   * one: a coordinator whose updates never fit is rejoined with growing back-off, not in a loop.
   */
  private unproductiveRejoins = 0;
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private stopping = false;
  private finished!: (error?: Error) => void;
  private readonly status: WorkerStatus = {
    state: 'connecting',
    workerId: null,
    version: -1,
    stepsDone: 0,
    lastLoss: null,
    lastShard: 0,
    imagesPerSecond: null,
  };

  constructor(options: WorkerOptions) {
    this.options = options;
    this.clock = options.clock ?? realClock;
  }

  /** Runs until stop() or a fatal refusal; rejects with the coordinator's reason on the latter. */
  start(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.finished = (error) => {
        this.setStatus({ state: 'stopped', error: error?.message });
        this.stopHeartbeat();
        this.replica?.dispose();
        this.replica = null;
        if (error) reject(error);
        else resolve();
      };
      void this.connectLoop();
    });
  }

  /** Leaves cleanly: says bye, closes, resolves start(). */
  stop(reason = 'worker stopped'): void {
    if (this.stopping) return;
    this.stopping = true;
    if (this.transport) {
      this.sendMessage({ type: 'bye', v: PROTOCOL_VERSION, reason });
      this.transport.close(CLOSE_CODES.normal, reason);
    }
    this.finished?.();
  }

  private log(level: LogLevel, message: string, fields?: LogFields): void {
    this.options.log?.(level, message, fields);
  }

  private setStatus(patch: Partial<WorkerStatus>): void {
    Object.assign(this.status, patch);
    this.options.onStatus?.({ ...this.status });
  }

  private async connectLoop(): Promise<void> {
    const { initialMs, maxMs } = this.options.reconnect ?? { initialMs: 500, maxMs: 15_000 };
    for (let attempt = 0; !this.stopping; attempt++) {
      if (attempt > 0) {
        const delay = backoffDelay(attempt - 1, initialMs, maxMs);
        this.setStatus({ state: 'reconnecting' });
        this.log('info', `reconnecting in ${(delay / 1000).toFixed(1)} s`);
        await this.clock.sleep(delay);
        if (this.stopping) return;
      }
      let closed!: (info: { code: number; reason: string }) => void;
      const closedPromise = new Promise<{ code: number; reason: string }>((resolve) => (closed = resolve));
      const connection = ++this.connections;
      try {
        const transport = await this.options.connect(this.options.url, {
          onMessage: (frame) => this.onFrame(frame, connection),
          onClose: (code, reason) => closed({ code, reason }),
        });
        if (this.stopping) {
          // stop() came while this connection was opening: nobody will close it later.
          transport.close(CLOSE_CODES.normal, 'worker stopped');
          return;
        }
        this.transport = transport;
        this.liveConnection = connection;
      } catch (error) {
        this.log('warn', `cannot reach ${this.options.url}`, { error: (error as Error).message });
        continue;
      }
      this.sendMessage({
        type: 'hello',
        v: PROTOCOL_VERSION,
        token: this.options.token,
        runtime: this.options.runtime,
        features: [...WORKER_FEATURES],
        ...(this.status.workerId ? { workerId: this.status.workerId } : {}),
      });
      // A rejoin's welcome may wait behind a shard of the dropped connection still computing:
      // the coordinator hears from this worker meanwhile, at the run's pace.
      if (this.run) this.startHeartbeat(this.run.heartbeatMs);
      const { code, reason } = await closedPromise;
      this.transport = null;
      this.liveConnection = null;
      this.stopHeartbeat();
      if (this.stopping) return;
      if (FATAL_CLOSE_CODES.has(code)) {
        this.stopping = true;
        this.finished(new Error(`the coordinator refused this worker: ${reason || `close code ${code}`}`));
        return;
      }
      this.log('warn', 'connection closed', { code, reason: reason || undefined });
      // Back-off starts again after a connection that was joined or left normally; it grows
      // over connections that end before a welcome, and over rejoins that apply nothing.
      if (this.unproductiveRejoins > 0) attempt = this.unproductiveRejoins;
      else if (code === CLOSE_CODES.normal || this.welcomedOn === connection) attempt = 0;
    }
  }

  private sendMessage(message: Message): void {
    this.transport?.send(encodeMessage(message));
  }

  /**
   * What depends on the run (assignments, updates, evaluations) is parsed in its turn in the
   * queue, against the run the worker is in by then: a frame that came in the same read as a
   * welcome is held to that welcome's run, not to the run (or none) before it. The rest is
   * parsed on arrival, so the coordinator's errors and byes are logged at once.
   */
  private onFrame(frame: Uint8Array, connection: number): void {
    const type = frameType(frame);
    if (type === 'assign' || type === 'update' || type === 'evaluate') {
      this.enqueue(connection, () => this.onRunFrame(frame, type));
      return;
    }
    let message: Message;
    try {
      message = parseMessage(frame);
    } catch (error) {
      const text = (error as Error).message;
      if (type === 'welcome') {
        // A coordinator whose welcome this build cannot even read (a newer codec, say): staying
        // would leave the worker admitted and silent, and reconnecting brings the same welcome.
        this.enqueue(connection, () => this.leave(`cannot follow this coordinator's run: ${text}`));
        return;
      }
      this.log('warn', 'dropped a bad message from the coordinator', { error: text });
      return;
    }
    switch (message.type) {
      case 'welcome':
        this.enqueue(connection, () => this.joinOrLeave(message));
        break;
      case 'error':
        this.log('warn', 'the coordinator reported an error', { code: message.code, error: message.message });
        break;
      case 'bye':
        this.log('info', 'the coordinator said bye', { reason: message.reason });
        break;
      case 'heartbeat':
        break;
      default:
        this.log('warn', 'ignored an unexpected message', { type: message.type });
    }
  }

  /**
   * Messages are handled strictly in order (an update must land before the next assign), and
   * only while the connection they came on is the one open: work queued on a connection that
   * has dropped belongs to the coordinator's view of that connection, which a rejoin replaces
   * (its shards are re-issued; its updates are superseded by the next welcome). Answering it on
   * the next connection would be refused there, and close it.
   */
  private enqueue(connection: number, task: () => Promise<void> | void): void {
    this.queue = this.queue
      .then(() => (this.liveConnection === connection && !this.stopping ? task() : undefined))
      .catch((error: unknown) => {
        const text = error instanceof Error ? error.message : String(error);
        this.log('error', text);
        this.setStatus({ error: text });
      });
  }

  /** An assignment, update or evaluation, parsed against the run this worker is in. */
  private async onRunFrame(frame: Uint8Array, type: 'assign' | 'update' | 'evaluate'): Promise<void> {
    const run = this.run;
    if (!run) return;
    let message: Message;
    try {
      message = parseMessage(frame, { paramCount: run.paramCount, bnStatCount: run.bnStatCount, maxShardExamples: 1 << 20, codec: run.codec, ...(this.lowRank ? { lowRank: this.lowRank.plan } : {}) });
    } catch (error) {
      const text = (error as Error).message;
      if (type === 'update') {
        // Without this update the worker is off the run's weights from now on (the next delta
        // would be added to the wrong ones): a welcome brings them back.
        this.log('warn', 'an update does not fit this run; rejoining for its weights', { error: text });
        this.rejoin('update does not fit the run');
      } else {
        this.log('warn', `dropped ${type === 'assign' ? 'an assignment' : 'an evaluation'} that does not fit this run`, { error: text });
      }
      return;
    }
    if (message.type === 'assign') await this.onAssign(message);
    else if (message.type === 'update') this.onUpdate(message);
    else if (message.type === 'evaluate') await this.onEvaluate(message);
  }

  /**
   * Closes the connection to be welcomed again. Nothing more of it is handled from here on:
   * its close completes only when the coordinator answers, and what it still delivers until
   * then belongs to the run this worker has fallen out of.
   */
  private rejoin(reason: string): void {
    this.unproductiveRejoins++;
    this.liveConnection = null;
    this.stopHeartbeat();
    this.transport?.close(CLOSE_CODES.normal, reason);
  }

  /** Ends the worker with `reason`: says bye, closes, rejects start(). */
  private leave(reason: string): void {
    this.log('error', reason);
    this.stopping = true;
    this.sendMessage({ type: 'bye', v: PROTOCOL_VERSION, reason: closeReason(reason) });
    this.transport?.close(CLOSE_CODES.normal, closeReason(reason));
    this.finished?.(new Error(reason));
  }

  /**
   * A welcome this build cannot follow (another model layout, factors that do not fit) ends the
   * worker with the reason: staying connected would leave it admitted and silent, handed shards it
   * never answers until the coordinator drops it, and a reconnect would only bring the same welcome.
   */
  private joinOrLeave(message: Welcome): void {
    // Queued behind a shard when stop() came: joining now would start a replica and a heartbeat
    // for a worker that has ended.
    if (this.stopping) return;
    try {
      this.onWelcome(message);
    } catch (error) {
      this.leave(`cannot follow this coordinator's run: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private onWelcome(message: Welcome): void {
    const specJson = JSON.stringify(message.run.spec);
    const keepResidual = this.mayKeepResidual(message, specJson);
    const rejoining = this.run !== null;
    if (!this.replica || specJson !== this.specJson || this.replica.bnGroup !== message.run.bnGroup) {
      this.replica?.dispose();
      this.replica = new Replica(message.run.spec as ResNetV2Spec, {
        microBatch: this.options.runtime.microBatch,
        bnGroup: message.run.bnGroup,
      });
      this.specJson = specJson;
      if (this.replica.layout.paramCount !== message.run.paramCount) {
        throw new Error(`model mismatch: coordinator says ${message.run.paramCount} parameters, this build has ${this.replica.layout.paramCount}`);
      }
    }
    // Checked before the run's state changes (joinOrLeave then ends the worker).
    const codec = getGradientCodec(message.run.codec);
    let lowRank: ChorusWorker['lowRank'] = null;
    if (message.run.lowRank !== undefined) {
      const held = keepResidual ? this.lowRank : null;
      const plan = held?.plan ?? new LowRankPlan(message.run.paramCount, this.replica.layout.params, message.run.lowRank);
      const expected = plan.factorLength(sideOfStep(message.version));
      if (message.factors?.length !== expected) throw new Error(`welcome: ${message.factors?.length ?? 'no'} low-rank factor values; rank ${message.run.lowRank} at v${message.version} needs ${expected}`);
      lowRank = { plan, feedback: held?.feedback ?? new LowRankFeedback(plan, codec), factors: message.factors.slice() };
    }
    this.run = message.run;
    this.codec = codec;
    // A low-rank run keeps its residual in its LowRankFeedback, the others in an ErrorFeedback.
    this.lowRank = lowRank;
    this.errorFeedback = lowRank ? null : ((keepResidual ? this.errorFeedback : null) ?? new ErrorFeedback(codec, message.run.paramCount));
    if (rejoining && !keepResidual) this.log('info', 'error feedback starts again from zero', { weights: `v${message.version}` });
    this.uncounted.clear();
    this.publicParams = this.codec.name === 'fp32' ? null : message.params.slice();
    this.setParams(this.publicParams ?? message.params);
    this.bnStats = message.bnStats.slice();
    this.setStatus({ state: 'ready', workerId: message.workerId, version: message.version });
    this.log('info', `joined as ${message.workerId}`, { preset: message.run.preset, params: message.run.paramCount, weights: `v${message.version}` });
    this.welcomedOn = this.liveConnection;
    this.startHeartbeat(message.run.heartbeatMs);
  }

  /**
   * Whether the residual error feedback carries may go on past this welcome. It holds what
   * counted payloads left out, and nothing else, once every shard it kept a part of is settled
   * (no shard waits for its update): then it stays valid across a rejoin to the same run at the
   * same or a later step, such as a network blip, where starting it again would drop what the
   * run has not yet received (under low-rank gradients, the part of recent gradients outside the
   * factors' span). It starts again after a jump back (a coordinator resumed from an earlier
   * checkpoint: the steps it lost counted some of it), into another run, or with shards unsettled.
   */
  private mayKeepResidual(message: Welcome, specJson: string): boolean {
    const held = this.run;
    if (!held || !this.replica || !this.uncounted.empty) return false;
    const sameRun =
      held.codec === message.run.codec &&
      held.lowRank === message.run.lowRank &&
      held.paramCount === message.run.paramCount &&
      held.bnGroup === message.run.bnGroup &&
      specJson === this.specJson;
    return sameRun && message.version >= this.status.version;
  }

  private onUpdate(message: Update): void {
    if (!this.replica || !this.codec) return;
    if (message.version !== this.status.version + 1 && (message.delta || this.lowRank)) {
      // A delta is relative to the previous version: applied to any other it would leave this
      // worker's weights different from everyone's for good. And the update this worker missed
      // was the one to say which of its shards counted; under low-rank gradients, even with full
      // weights (fp32), what it kept of an uncounted one is most of a gradient. A fresh welcome
      // brings the weights back and starts the residual again.
      this.log('warn', 'missed an update; rejoining for the full weights', { update: `v${message.version}`, holding: `v${this.status.version}` });
      this.rejoin('missed an update');
      return;
    }
    if (message.params) {
      this.setParams(message.params);
    } else if (message.delta && this.publicParams) {
      applyDelta(this.codec, { values: message.delta, scales: message.scales }, this.publicParams);
      this.setParams(this.publicParams);
    }
    // Parsed against the run (onRunFrame): the factors of the step at this version.
    if (this.lowRank) this.lowRank.factors = message.factors!.slice();
    this.bnStats = message.bnStats.slice();
    this.unproductiveRejoins = 0;
    const takenBack = this.uncounted.settle(message.version, message.counted, this.lowRank?.feedback ?? this.errorFeedback);
    if (takenBack.length) this.log('info', 'a gradient of this worker was not counted (its shard went to another worker); its error feedback takes back what it kept of it', { shards: takenBack.join(', '), step: message.version - 1 });
    this.setStatus({ version: message.version });
  }

  private setParams(params: Float32Array): void {
    this.replica!.setParams(params);
    this.params = params;
    this.paramsVersion++;
  }

  /** The low-rank factors this worker projects onto (a copy; null unless a low-rank run), for tests. */
  lowRankFactors(): Float32Array | null {
    return this.lowRank?.factors.slice() ?? null;
  }

  /** The residual its error feedback carries into the next gradient (a copy; null when none, as under fp32), for tests. */
  residual(): Float32Array | null {
    return (this.lowRank?.feedback ?? this.errorFeedback)?.carried?.slice() ?? null;
  }

  /** The public weights this worker computes at (a copy), for tests that compare workers bit for bit. */
  publicWeights(): Float32Array | null {
    return this.publicParams?.slice() ?? null;
  }

  private async onAssign(message: Assign): Promise<void> {
    if (!this.replica) return;
    // The connection it came on, which is open (enqueue): the result goes there or nowhere.
    const connection = this.liveConnection;
    if (message.version !== this.status.version || message.step !== message.version) {
      // Cannot happen on an ordered channel unless the coordinator is confused: say so. (Every
      // step is computed at the weights of its own version: a low-rank gradient is a projection
      // for its step's side, and the uncounted-shards ledger settles a shard by its step.)
      this.log('warn', 'skipped an assignment for other weights', { assigned: `v${message.version}`, holding: `v${this.status.version}` });
      return;
    }
    this.setStatus({ state: 'training' });
    const now = () => this.clock.now();
    const computer = this.shardComputerFailed ? undefined : this.options.shardComputer;
    let result: ShardResult | null = null;
    if (computer && this.run && this.params) {
      try {
        result = await computer.compute(
          { spec: this.run.spec as ResNetV2Spec, bnGroup: this.run.bnGroup, microBatch: this.replica.microBatch, params: this.params, paramsVersion: this.paramsVersion },
          message,
          now,
        );
      } catch (error) {
        // A replica thread that died (out of memory, killed) stays dead: rather than fail every
        // shard from now on, train on the worker's own replica, which gives the same bits.
        this.shardComputerFailed = true;
        this.log('warn', "the replica threads failed: training on this worker's own replica from now on", { reason: error instanceof Error ? error.message : String(error) });
        // Its surviving threads would otherwise hold their WASM memory for the rest of the run.
        Promise.resolve()
          .then(() => computer.close?.())
          .catch((closeError: unknown) => this.log('warn', 'could not close the failed replica threads', { reason: closeError instanceof Error ? closeError.message : String(closeError) }));
      }
    }
    result ??= await computeShard(this.replica, message, now);
    const slowdown = this.options.slowdown ?? 1;
    if (slowdown > 1) {
      await this.clock.sleep((slowdown - 1) * result.computeMs);
      result.computeMs *= slowdown;
    }
    // Stopped, or the connection dropped, while computing: nobody is there to send it to, and
    // encoding it would put into the residual a gradient the coordinator never counts.
    if (this.stopping || this.liveConnection !== connection) return;
    const { gradient, ...rest } = result;
    // The held factors are those of the held version, which the assign was checked against.
    const lowRank = this.lowRank;
    const errorFeedback = this.errorFeedback!;
    const encoded = this.uncounted.encode(lowRank?.feedback ?? errorFeedback, message.shardId, message.step, () =>
      lowRank ? lowRank.feedback.encode(gradient, sideOfStep(message.version), lowRank.factors) : errorFeedback.encode(gradient),
    );
    this.sendMessage({
      type: 'gradient',
      v: PROTOCOL_VERSION,
      step: message.step,
      shardId: message.shardId,
      ...rest,
      gradient: encoded.values,
      ...(encoded.scales ? { scales: encoded.scales } : {}),
    });
    this.setStatus({
      state: 'ready',
      stepsDone: this.status.stepsDone + 1,
      lastLoss: result.lossSum / result.count,
      lastShard: result.count,
      imagesPerSecond: (result.count * 1000) / result.computeMs,
    });
  }

  private async onEvaluate(message: Evaluate): Promise<void> {
    if (!this.replica || !this.bnStats) return;
    if (message.version !== this.status.version) {
      // As for assignments: an evaluation of weights this worker does not hold would report
      // another model's accuracy.
      this.log('warn', 'skipped an evaluation of other weights', { evaluate: `v${message.version}`, holding: `v${this.status.version}` });
      return;
    }
    this.setStatus({ state: 'evaluating' });
    const connection = this.liveConnection;
    const images = shardImages(message.pixels, null, null);
    const result = await this.replica.evaluate(images, message.labels, this.bnStats);
    if (this.stopping || this.liveConnection !== connection) return;
    this.sendMessage({
      type: 'evalResult',
      v: PROTOCOL_VERSION,
      evalId: message.evalId,
      shardId: message.shardId,
      count: result.count,
      lossSum: result.lossSum,
      correct: result.correct,
    });
    this.setStatus({ state: 'ready' });
  }

  private startHeartbeat(intervalMs: number): void {
    this.stopHeartbeat();
    // The coordinator's figure, within sense: Node turns an interval past 2^31 - 1 ms into 1 ms.
    intervalMs = Math.min(Math.max(intervalMs, HEARTBEAT_MIN_MS), HEARTBEAT_MAX_MS);
    this.heartbeatTimer = setInterval(() => {
      this.sendMessage({
        type: 'heartbeat',
        v: PROTOCOL_VERSION,
        time: Date.now(),
        ...(this.options.isHidden ? { hidden: this.options.isHidden() } : {}),
      });
    }, intervalMs);
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }
}

