import { createHash } from 'node:crypto';
import type { Status, WorkerRow } from '@chorus/protocol';
import type { WorkerRecord } from '../run/membership.js';
import type { RunConfig } from '../run/run-config.js';
import type { ShardRound } from '../run/shard-round.js';
import type { RunHistory } from './run-log.js';

/**
 * Why the batch leaves ready workers without a share, or null when it does not have to:
 * shards are whole BatchNorm groups, so a batch of G groups feeds at most G workers.
 */
export function shareShortage(batch: number, bnGroup: number, ready: number): string | null {
  const groups = Math.ceil(batch / bnGroup);
  if (ready <= groups) return null;
  return `the batch of ${batch} is ${groups} BatchNorm group${groups === 1 ? '' : 's'} of ${bnGroup}, too few for ${ready} workers: the fastest ${groups} train, the others wait (raise --batch or lower --bn-group)`;
}

/** What a worker row needs to know about the step in flight. */
export interface ShareView {
  /** Workers holding or having delivered a share of the step in flight; null between steps. */
  holders: Set<string> | null;
  /** When the step in flight started (the coordinator's clock), null between steps. */
  roundStartedAt: number | null;
  /** Workers that trained the last completed step. */
  lastStepWorkers: Set<string>;
  anyStepDone: boolean;
  shortage: string | null;
  /** Workers shards go to now (not behind, no backlog on their socket), by id. */
  assignable: Set<string>;
}

export function workerState(w: WorkerRecord, view: ShareView): Pick<WorkerRow, 'state' | 'idleReason'> {
  if (w.state === 'left') return { state: 'left' };
  // Before straggling: a worker whose link fell behind has almost always missed a deadline too.
  if (w.behind) return { state: 'idle', idleReason: 'its link is behind the run: it sits out until the updates queued for it have left' };
  if (w.hidden) return { state: 'throttled' };
  if (w.straggling) return { state: 'straggling' };
  const sharing = view.holders ?? view.lastStepWorkers;
  if (sharing.has(w.id) || (view.holders === null && !view.anyStepDone)) return { state: 'training' };
  if (!view.assignable.has(w.id)) return { state: 'idle', idleReason: 'its link still holds earlier messages: it gets a share once they have left' };
  if (view.shortage) return { state: 'idle', idleReason: `no share: ${view.shortage}` };
  const joinedDuring = view.roundStartedAt !== null && w.joinedAt > view.roundStartedAt;
  return { state: 'idle', idleReason: joinedDuring ? 'joined during this step: trains from the next one' : 'no share in this step' };
}

export function workerRow(w: WorkerRecord, view: ShareView): WorkerRow {
  return {
    id: w.id,
    kind: w.runtime.kind,
    backend: w.runtime.backend,
    device: w.runtime.device,
    ...workerState(w, view),
    imagesPerSecond: w.speed,
    lastLatencyMs: w.lastLatencyMs,
    lastShard: w.lastShard,
    shardsDone: w.shardsDone,
    imagesDone: w.imagesDone,
    bytesIn: w.conn?.bytesIn ?? null,
    bytesOut: w.conn?.bytesOut ?? null,
    backends: w.runtime.backends ?? [],
  };
}

/** The run as `GET /api/status` and the monitor's status frames show it. */
export function buildStatus(input: {
  config: Pick<RunConfig, 'preset' | 'batch' | 'steps'>;
  paramCount: number;
  step: number;
  epoch: number;
  paused: boolean;
  paramsHash: string;
  /** Wall clock (Date.now()) of the first step, null before it. */
  runStartedAt: number | null;
  history: RunHistory;
  workers: readonly WorkerRecord[];
  /** The training round in flight, null between steps. */
  round: Pick<ShardRound<unknown>, 'holders' | 'startedAt'> | null;
  shortage: string | null;
  /** The workers shards go to now (Membership.assignable). */
  assignable: readonly WorkerRecord[];
}): Status {
  const { history, config, round } = input;
  const last = history.steps.at(-1);
  const view: ShareView = {
    holders: round ? round.holders() : null,
    roundStartedAt: round ? round.startedAt : null,
    lastStepWorkers: new Set(Object.keys(last?.perWorker ?? {})),
    anyStepDone: history.steps.length > 0,
    shortage: input.shortage,
    assignable: new Set(input.assignable.map((w) => w.id)),
  };
  return {
    preset: config.preset,
    paramCount: input.paramCount,
    batch: config.batch,
    steps: config.steps,
    step: input.step,
    epoch: input.epoch,
    paused: input.paused,
    lr: last?.lr ?? null,
    loss: last?.loss ?? null,
    accuracy: last?.accuracy ?? null,
    testAccuracy: history.evals.at(-1)?.accuracy ?? null,
    paramsHash: input.paramsHash,
    elapsedSeconds: input.runStartedAt === null ? 0 : (Date.now() - input.runStartedAt) / 1000,
    etaSeconds: etaSeconds(history, input.step, config.steps),
    workers: input.workers.map((w) => workerRow(w, view)),
    events: history.events.slice(-200),
    recentSteps: history.steps.slice(-200),
  };
}

/** SHA-256 of the weights' bytes: how tests and operators compare two runs' weights. */
export function hashParams(params: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(params.buffer, params.byteOffset, params.byteLength)).digest('hex');
}

/** Remaining steps times the mean duration of the last 20 steps; null before any step. */
export function etaSeconds(history: RunHistory, step: number, steps: number): number | null {
  const recent = history.steps.slice(-20);
  if (recent.length === 0) return null;
  const mean = recent.reduce((a, r) => a + r.seconds, 0) / recent.length;
  return Math.max(0, steps - step) * mean;
}
