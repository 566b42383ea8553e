/**
 * Splits a range of a global batch among workers in proportion to their measured speed.
 * Cuts fall on BatchNorm group boundaries, so the split never changes the step's result,
 * and every worker gets at least `minGroups` groups while there are enough to go round.
 */
export interface WorkerSpeed {
  id: string;
  /** Measured images per second (end to end); any positive number. */
  imagesPerSecond: number;
}

export interface ShardPlan {
  workerId: string;
  /** Positions in the global batch, [start, end). */
  start: number;
  end: number;
}

export function planShards(
  start: number,
  end: number,
  workers: readonly WorkerSpeed[],
  options: { bnGroup: number; minGroups?: number },
): ShardPlan[] {
  const total = end - start;
  if (workers.length === 0) throw new Error('planShards: no workers');
  if (total <= 0) return [];
  const g = options.bnGroup;
  const groups = Math.ceil(total / g);
  const minGroups = Math.max(0, options.minGroups ?? 1);
  // Fastest first, so when groups are scarce the fast workers get them.
  const ranked = [...workers].sort((a, b) => b.imagesPerSecond - a.imagesPerSecond || a.id.localeCompare(b.id));
  const used = ranked.slice(0, Math.min(ranked.length, groups));
  const floor = Math.min(minGroups, Math.floor(groups / used.length));
  const speeds = used.map((w) => (Number.isFinite(w.imagesPerSecond) && w.imagesPerSecond > 0 ? w.imagesPerSecond : 1));
  const speedSum = speeds.reduce((a, b) => a + b, 0);
  const spare = groups - floor * used.length;
  // Largest-remainder apportionment of the groups above the floor.
  const exact = speeds.map((s) => (spare * s) / speedSum);
  const counts = exact.map((x) => Math.floor(x) + floor);
  let left = groups - counts.reduce((a, b) => a + b, 0);
  const order = exact.map((x, i) => ({ i, r: x - Math.floor(x) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) counts[order[k].i]++;
  const plans: ShardPlan[] = [];
  let at = start;
  used.forEach((w, i) => {
    if (counts[i] === 0) return;
    const next = Math.min(end, at + counts[i] * g);
    plans.push({ workerId: w.id, start: at, end: next });
    at = next;
  });
  return plans;
}
