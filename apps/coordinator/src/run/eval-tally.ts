import type { RoundSink } from './shard-round.js';

/** What a worker reports for one evaluation shard. */
export interface EvalShardResult {
  lossSum: number;
  correct: number;
}

/**
 * The evaluation round's sink: sums loss and correct predictions over the test examples,
 * counting each range once (the same contract as the training reducer, without gradients).
 */
export class EvalTally implements RoundSink<EvalShardResult> {
  readonly count: number;
  lossSum = 0;
  correct = 0;
  received = 0;
  private readonly awaited = new Map<number, number>();

  constructor(count: number) {
    this.count = count;
  }

  expect(start: number, end: number): void {
    this.awaited.set(start, end);
  }

  withdraw(start: number): void {
    this.awaited.delete(start);
  }

  isPending(start: number): boolean {
    return this.awaited.has(start);
  }

  accept(start: number, end: number, result: EvalShardResult): boolean {
    if (this.awaited.get(start) !== end) return false;
    this.awaited.delete(start);
    this.lossSum += result.lossSum;
    this.correct += result.correct;
    this.received += end - start;
    return true;
  }

  get complete(): boolean {
    return this.received === this.count;
  }
}
