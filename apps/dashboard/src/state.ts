import type { EvalRecord, MonitorMessage, RunEvent, Status, StepRecord } from './types.js';
import { backoffDelay } from '@chorus/protocol/backoff';

/** The most steps and events the page keeps (the coordinator keeps at most 20,000 steps). */
export const MAX_STEPS = 20_000;
export const MAX_EVENTS = 2_000;

/** Everything the page knows about the run, built from the monitor feed. */
export interface RunState {
  status: Status | null;
  steps: StepRecord[];
  evals: EvalRecord[];
  events: RunEvent[];
}

/** What a message changed, so the page redraws only that. */
export interface Changes {
  status: boolean;
  steps: boolean;
  evals: boolean;
  events: boolean;
}

export function emptyState(): RunState {
  return { status: null, steps: [], evals: [], events: [] };
}

const trim = <T>(list: T[], max: number): void => {
  if (list.length > max) list.splice(0, list.length - max);
};

/**
 * Folds one monitor message into the state (in place) and says what changed. A snapshot
 * replaces everything (it is the whole history, sent on every (re)connect); a step also moves
 * the summary on at once instead of waiting for the next status message.
 */
export function applyMessage(state: RunState, message: MonitorMessage): Changes {
  const none: Changes = { status: false, steps: false, evals: false, events: false };
  switch (message.type) {
    case 'snapshot':
      state.status = message.status;
      state.steps = [...message.steps];
      state.evals = [...message.evals];
      state.events = [...message.events];
      trim(state.steps, MAX_STEPS);
      trim(state.events, MAX_EVENTS);
      return { status: true, steps: true, evals: true, events: true };
    case 'status':
      state.status = message.status;
      return { ...none, status: true };
    case 'step': {
      const record = message.step;
      const last = state.steps.at(-1);
      // A step the page already has (a snapshot raced the live message) is not added twice.
      if (last && record.step <= last.step) return none;
      state.steps.push(record);
      trim(state.steps, MAX_STEPS);
      if (state.status) {
        state.status.step = Math.max(state.status.step, record.step);
        state.status.loss = record.loss;
        state.status.accuracy = record.accuracy;
        state.status.lr = record.lr;
      }
      return { ...none, steps: true, status: state.status !== null };
    }
    case 'eval':
      state.evals.push(message.eval);
      if (state.status) state.status.testAccuracy = message.eval.accuracy;
      return { ...none, evals: true, status: state.status !== null };
    case 'event':
      state.events.push(message.event);
      trim(state.events, MAX_EVENTS);
      return { ...none, events: true };
    default:
      return none;
  }
}

/** Parses a monitor frame; null for anything that is not a message the page knows. */
export function parseMessage(text: string): MonitorMessage | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const m = value as Record<string, unknown>;
  switch (m.type) {
    case 'snapshot':
      return typeof m.status === 'object' && m.status !== null && Array.isArray(m.steps) && Array.isArray(m.evals) && Array.isArray(m.events)
        ? (m as unknown as MonitorMessage)
        : null;
    case 'status':
      return typeof m.status === 'object' && m.status !== null ? (m as unknown as MonitorMessage) : null;
    case 'step':
      return typeof m.step === 'object' && m.step !== null ? (m as unknown as MonitorMessage) : null;
    case 'eval':
      return typeof m.eval === 'object' && m.eval !== null ? (m as unknown as MonitorMessage) : null;
    case 'event':
      return typeof m.event === 'object' && m.event !== null ? (m as unknown as MonitorMessage) : null;
    default:
      return null;
  }
}

/**
 * Series that share one x axis: the union of every series' x values, sorted, with each series
 * aligned to it (null where it has no value). uPlot wants exactly this shape.
 */
export function alignSeries(series: { x: number[]; y: (number | null)[] }[]): [number[], ...(number | null)[][]] {
  const xs = [...new Set(series.flatMap((s) => s.x))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const columns = series.map((s) => {
    const column: (number | null)[] = new Array<number | null>(xs.length).fill(null);
    s.x.forEach((x, i) => {
      const v = s.y[i];
      column[index.get(x)!] = typeof v === 'number' && Number.isFinite(v) ? v : null;
    });
    return column;
  });
  return [xs, ...columns];
}

/** Worker ids that appear in the steps' per-worker speeds, in order of first appearance. */
export function workerIds(steps: StepRecord[]): string[] {
  const seen = new Set<string>();
  for (const s of steps) for (const id of Object.keys(s.perWorker ?? {})) seen.add(id);
  return [...seen];
}

/** The per-step breakdown of the last `count` steps, for the stacked view. */
export function recentBreakdowns(steps: StepRecord[], count: number): StepRecord[] {
  return steps.slice(-count).filter((s) => s.breakdown !== undefined);
}

/** Reconnect delay: the back-off every client of the coordinator uses (0.5 s doubling, capped at 10 s). */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  return backoffDelay(attempt, 500, 10_000, random);
}
