import type { WorkerRecord } from './membership.js';
import type { Planner } from './shard-round.js';
import { planShards } from './scheduler.js';

/** A hidden (throttled) tab gets a token share until it is visible again. */
const HIDDEN_SHARE = 0.05;

/**
 * Training: shares follow measured speed and fall on BatchNorm group boundaries. A worker not
 * measured yet counts as the median of those that are (as 1 when none is).
 */
export function trainingPlanner(bnGroup: number): Planner {
  return (start, end, workers) => {
    const known = workers.map((w) => w.speed).filter((s): s is number => s !== null);
    const fallback = known.length ? known.sort((a, b) => a - b)[Math.floor(known.length / 2)] : 1;
    return planShards(start, end, workers.map((w) => ({ id: w.id, imagesPerSecond: (w.speed ?? fallback) * (w.hidden ? HIDDEN_SHARE : 1) })), {
      bnGroup,
      minGroups: 1,
    });
  };
}

/**
 * Evaluation: no BatchNorm groups (inference uses the running statistics), and pieces of at
 * most `pieceSize` examples, so frames stay small and a lost worker loses little.
 */
export function evaluationPlanner(pieceSize: number): Planner {
  return (start, end, workers: readonly WorkerRecord[]) =>
    planShards(start, end, workers.map((w) => ({ id: w.id, imagesPerSecond: w.speed ?? 1 })), { bnGroup: 1, minGroups: 1 }).flatMap((plan) => {
      const pieces = [];
      for (let s = plan.start; s < plan.end; s += pieceSize) pieces.push({ ...plan, start: s, end: Math.min(plan.end, s + pieceSize) });
      return pieces;
    });
}
