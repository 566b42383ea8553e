import type { StepBreakdown, StepRecord } from '@chorus/protocol';
import type { StepTotals } from './reducer.js';

/** One accepted shard of a step, as the telemetry sees it. */
export interface Arrival {
  workerId: string;
  shardId: number;
  count: number;
  sentAt: number;
  arrivedAt: number;
  /** What the worker says it spent computing. */
  computeMs: number;
}

/** Milestones of a step on the coordinator's clock (milliseconds). */
export interface StepTimes {
  startedAt: number;
  /** Time spent adding gradients as they arrived. */
  reduceMs: number;
  /** Before the totals, after them, after the optimizer, after the broadcast. */
  t0: number;
  t1: number;
  t2: number;
  t3: number;
}

/**
 * Where a step's time went, for the dashboard: the critical (last) shard's compute and
 * transfer, the wait between the first and last arrival, and the coordinator's own work.
 */
export function stepRecord(input: { step: number; lr: number; totals: StepTotals; arrivals: readonly Arrival[]; times: StepTimes; workers: number }): StepRecord {
  const { totals, arrivals, times } = input;
  const last = arrivals.reduce((a, b) => (b.arrivedAt > a.arrivedAt ? b : a), arrivals[0]);
  const first = arrivals.reduce((a, b) => (b.arrivedAt < a.arrivedAt ? b : a), arrivals[0]);
  const perWorker = new Map<string, { count: number; ms: number }>();
  for (const a of arrivals) {
    const w = perWorker.get(a.workerId) ?? { count: 0, ms: 0 };
    w.count += a.count;
    w.ms = Math.max(w.ms, a.arrivedAt - a.sentAt);
    perWorker.set(a.workerId, w);
  }
  const breakdown: StepBreakdown = {
    computeMs: last.computeMs,
    transferMs: Math.max(0, last.arrivedAt - last.sentAt - last.computeMs),
    waitMs: last.arrivedAt - first.arrivedAt,
    reduceMs: times.reduceMs + (times.t1 - times.t0),
    optimizerMs: times.t2 - times.t1,
    broadcastMs: times.t3 - times.t2,
  };
  const seconds = (times.t3 - times.startedAt) / 1000;
  return {
    step: input.step,
    loss: totals.loss,
    accuracy: totals.accuracy,
    lr: input.lr,
    seconds,
    imagesPerSecond: totals.count / seconds,
    workers: input.workers,
    examples: totals.examples,
    shards: totals.shards,
    time: Date.now(),
    perWorker: Object.fromEntries([...perWorker].map(([id, w]) => [id, (w.count * 1000) / Math.max(1, w.ms)])),
    breakdown,
  };
}
