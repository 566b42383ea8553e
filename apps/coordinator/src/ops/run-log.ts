import type { EvalRecord, RunEvent, RunUpdate, StepRecord } from '@chorus/protocol';
import type { Logger } from './logger.js';

/** How much history is kept in memory (the dashboard's snapshot) and in a checkpoint. */
const KEEP = { steps: 20_000, stepsTrim: 5_000, events: 5_000, eventsTrim: 1_000, checkpointSteps: 2_000, checkpointEvents: 500 } as const;

export interface RunHistory {
  steps: StepRecord[];
  evals: EvalRecord[];
  events: RunEvent[];
}

/**
 * What happened in the run, for people: every step's record, every evaluation, every event
 * (joins, leaves, re-issues, refusals, ...). It writes events to the log and feeds the
 * dashboard's live monitor; the run's arithmetic never reads it.
 */
export class RunLog implements RunHistory {
  steps: StepRecord[] = [];
  evals: EvalRecord[] = [];
  events: RunEvent[] = [];
  private readonly log: Logger;
  private readonly listeners = new Set<(message: RunUpdate) => void>();

  constructor(log: Logger) {
    this.log = log;
  }

  /** Live feed of steps, evaluations and events (the dashboard's monitor socket). */
  subscribe(listener: (message: RunUpdate) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  event(kind: string, message: string, fields: Record<string, string | number> = {}): void {
    const entry = { time: Date.now(), kind, message };
    this.events.push(entry);
    if (this.events.length > KEEP.events) this.events.splice(0, KEEP.eventsTrim);
    this.emit({ type: 'event', event: entry });
    this.log.info(message, { event: kind, ...fields });
  }

  step(record: StepRecord): void {
    this.steps.push(record);
    if (this.steps.length > KEEP.steps) this.steps.splice(0, KEEP.stepsTrim);
    this.emit({ type: 'step', step: record });
  }

  eval(record: EvalRecord): void {
    this.evals.push(record);
    this.emit({ type: 'eval', eval: record });
  }

  /** The part a checkpoint keeps, so a resumed run's dashboard shows what came before. */
  forCheckpoint(): RunHistory {
    return { steps: this.steps.slice(-KEEP.checkpointSteps), evals: this.evals, events: this.events.slice(-KEEP.checkpointEvents) };
  }

  restore(history: Partial<RunHistory> | undefined): void {
    if (!history?.steps) return;
    this.steps = history.steps;
    this.evals = history.evals ?? [];
    this.events = history.events ?? [];
  }

  private emit(message: RunUpdate): void {
    for (const listener of this.listeners) {
      try {
        listener(message);
      } catch (error) {
        this.log.warn('monitor listener failed', { error: (error as Error).message });
      }
    }
  }
}
