/**
 * How every client of the coordinator (workers, the dashboard) waits before reconnecting:
 * exponential back-off, capped, with jitter in the upper half of the window. The jitter spreads
 * a fleet that lost the coordinator at the same moment; the lower bound keeps each client from
 * hammering a coordinator that is restarting. Dependency-free: the dashboard bundles it alone.
 */

/** The delay before reconnect attempt n (0-based). */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
