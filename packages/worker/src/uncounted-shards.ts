/** What the ledger needs of a worker's error feedback (ErrorFeedback, LowRankFeedback). */
export interface ResidualCarrier {
  /** The residual carried into the next encode; null where nothing is carried (fp32). */
  readonly carried: Float32Array | null;
  withdraw(part: Float32Array): void;
}

interface SentShard {
  shardId: number;
  step: number;
  /** The residual just before this shard's encode. */
  before: Float32Array;
}

/**
 * The shards a worker has sent gradients for and not yet seen settled by an update. Error
 * feedback keeps whatever a payload leaves out (rounding, and in low-rank runs everything outside
 * the factors' span) for the next shard. When the coordinator does not count a gradient (its
 * shard was given to another worker after a missed deadline, and this reply came late), the other
 * worker's gradient covered those examples: keeping this shard's part would apply them a second
 * time, a step later. So the update for its step says which shards counted (Update.counted), and
 * the part of any other is taken back. Parts add up linearly, so they can be taken back in any
 * order: what remains is exactly what the counted payloads left out.
 *
 * A shard's part is what its encode added to the residual: the residual before the next encode
 * (or now) less the residual before its own. Only those snapshots are kept, in buffers reused
 * from step to step, so a counted shard costs one copy of the residual and nothing more.
 */
export class UncountedShards {
  private sent: SentShard[] = [];
  private readonly spare: Float32Array[] = [];

  /** Runs `encode` for shard `shardId` of `step`, remembering the residual it starts from. */
  encode<T>(feedback: ResidualCarrier, shardId: number, step: number, encode: () => T): T {
    const carried = feedback.carried;
    if (carried) {
      const before = this.buffer(carried.length);
      before.set(carried);
      this.sent.push({ shardId, step, before });
    }
    return encode();
  }

  /**
   * The update to `version` arrived, having counted the shards in `counted`: every shard sent
   * for an earlier step is settled, and what those of its step (version - 1) it did not count
   * added is taken out of `feedback`. Without `counted` (an older coordinator) every shard counts,
   * and so does a shard of an older step, whose own update this worker missed: nothing says it
   * did not count. (The worker rejoins at such a gap wherever it carries a residual, so only
   * fp32 runs, which carry none, meet one here.) Returns the ids of the shards taken back.
   */
  settle(version: number, counted: Int32Array | undefined, feedback: ResidualCarrier | null): number[] {
    const now = feedback?.carried;
    const parts: { shardId: number; part: Float32Array }[] = [];
    // In the order sent: a shard's part needs the next shard's snapshot as it was taken.
    for (let i = 0; i < this.sent.length; i++) {
      const shard = this.sent[i]!;
      if (shard.step !== version - 1 || !counted || !now || counted.includes(shard.shardId)) continue;
      const after = this.sent[i + 1]?.before ?? now;
      const part = shard.before;
      for (let j = 0; j < part.length; j++) part[j] = after[j]! - part[j]!;
      parts.push({ shardId: shard.shardId, part });
    }
    const open = this.sent.filter((s) => s.step >= version);
    for (const { part } of parts) {
      feedback!.withdraw(part);
      // Shards still open started from a residual that held this part (never the case on an
      // ordered channel, where a step's update comes before the next step's assignments).
      for (const shard of open) for (let j = 0; j < part.length; j++) shard.before[j] -= part[j]!;
    }
    for (const shard of this.sent) if (shard.step < version) this.spare.push(shard.before);
    this.sent = open;
    return parts.map((p) => p.shardId);
  }

  /** Whether every shard sent is settled (none waits for the update that says if it counted). */
  get empty(): boolean {
    return this.sent.length === 0;
  }

  /** Forgets every shard (a welcome resets the residual they belong to, or finds none open). */
  clear(): void {
    for (const shard of this.sent) this.spare.push(shard.before);
    this.sent = [];
  }

  /** Shards awaiting their update. */
  get size(): number {
    return this.sent.length;
  }

  private buffer(length: number): Float32Array {
    const i = this.spare.findIndex((b) => b.length === length);
    if (i >= 0) return this.spare.splice(i, 1)[0]!;
    // Spares of another length belong to a run this worker has left.
    this.spare.length = 0;
    return new Float32Array(length);
  }
}
