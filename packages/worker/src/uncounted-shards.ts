/** What the ledger needs of a worker's error feedback (ErrorFeedback, LowRankFeedback). */
export interface ResidualCarrier {
  /** The residual carried into the next encode; null where nothing is carried (fp32). */
  readonly carried: Float32Array | null;
  withdraw(part: Float32Array): void;
}

interface SentShard {
  shardId: number;
  step: number;
  /** What encoding this shard's gradient added to the residual. */
  kept: Float32Array;
}

/**
 * The shards a worker has sent gradients for and not yet seen settled by an update. Error
 * feedback keeps whatever a payload leaves out (rounding, and in low-rank runs everything outside
 * the factors' span) for the next shard. When the coordinator does not count a gradient (its
 * shard was given to another worker after a missed deadline, and this reply came late), the other
 * worker's gradient covered those examples: keeping this shard's part would apply them a second
 * time, a step later. So each shard's part is remembered until the update for its step says
 * whether it counted (Update.counted), and taken back if not. Parts add up linearly, so they can
 * be taken back in any order: what remains is exactly what the counted payloads left out.
 */
export class UncountedShards {
  private sent: SentShard[] = [];

  /** Runs `encode` for shard `shardId` of `step`, and remembers what it added to `feedback`'s residual. */
  encode<T>(feedback: ResidualCarrier, shardId: number, step: number, encode: () => T): T {
    const before = feedback.carried?.slice();
    const result = encode();
    const after = feedback.carried;
    if (before && after) {
      for (let i = 0; i < before.length; i++) before[i] = after[i]! - before[i]!;
      this.sent.push({ shardId, step, kept: before });
    }
    return result;
  }

  /**
   * The update to `version` arrived, having counted the shards in `counted`: every shard sent
   * for an earlier step is settled, and what those it did not count kept is taken out of
   * `feedback`. Without `counted` (an older coordinator) every shard counts. Returns the ids of
   * the shards taken back.
   */
  settle(version: number, counted: Int32Array | undefined, feedback: ResidualCarrier | null): number[] {
    const takenBack: number[] = [];
    const open: SentShard[] = [];
    for (const shard of this.sent) {
      if (shard.step >= version) open.push(shard);
      else if (counted && feedback && !counted.includes(shard.shardId)) {
        feedback.withdraw(shard.kept);
        takenBack.push(shard.shardId);
      }
    }
    this.sent = open;
    return takenBack;
  }

  /** Forgets every shard (a welcome resets the residual they belong to). */
  clear(): void {
    this.sent = [];
  }

  /** Shards awaiting their update. */
  get size(): number {
    return this.sent.length;
  }
}
