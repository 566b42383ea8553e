/** Formatting for the dashboard: short, fixed-width-friendly, '–' for what is not known yet. */

export const NONE = '–';

const known = (x: number | null | undefined): x is number => typeof x === 'number' && Number.isFinite(x);

/** 570602 -> "570,602". */
export function integer(x: number | null | undefined): string {
  return known(x) ? Math.round(x).toLocaleString('en-US') : NONE;
}

/** A number with `digits` significant figures, plain notation where it reads well. */
export function number(x: number | null | undefined, digits = 4): string {
  if (!known(x)) return NONE;
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e-3 && a < 1e6) return Number(x.toPrecision(digits)).toString();
  return x.toExponential(digits - 1);
}

/** 0.8312 -> "83.1%". */
export function percent(x: number | null | undefined, decimals = 1): string {
  return known(x) ? `${(100 * x).toFixed(decimals)}%` : NONE;
}

/** 12345 -> "12.1 KiB". */
export function bytes(x: number | null | undefined): string {
  if (!known(x)) return NONE;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = x;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

/** Seconds as "42 s", "3 min 07 s", "2 h 05 min", "3 d 04 h". */
export function duration(seconds: number | null | undefined): string {
  if (!known(seconds) || seconds < 0) return NONE;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
  return `${Math.floor(s / 86_400)} d ${pad(Math.floor((s % 86_400) / 3600))} h`;
}

/** Milliseconds: "0.42 ms", "18 ms", "1.25 s". */
export function millis(ms: number | null | undefined): string {
  if (!known(ms)) return NONE;
  if (ms === 0) return '0 ms';
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${Math.round(ms)} ms`;
  return `${ms.toFixed(ms >= 1 ? 1 : 2)} ms`;
}

/** Images per second: "1,234/s", "56.7/s". */
export function rate(x: number | null | undefined): string {
  if (!known(x)) return NONE;
  if (x === 0) return '0/s';
  return x >= 100 ? `${integer(x)}/s` : `${x.toFixed(1)}/s`;
}

/** The local wall-clock time of an epoch-ms timestamp, "14:03:27". */
export function clock(time: number): string {
  const d = new Date(time);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A worker's share of the global batch, from the examples of its last shard. */
export function share(lastShard: number | null | undefined, batch: number | null | undefined): string {
  if (!known(lastShard) || !known(batch) || batch <= 0) return NONE;
  return `${((100 * lastShard) / batch).toFixed(0)}% (${lastShard})`;
}

/**
 * A worker's backend choice as a tooltip: one line per candidate it tried, "wasm: 27.5 img/s
 * (chosen)", "webgpu: 3.14 img/s, not used: software rendering, ...". '' when it sent none.
 */
export function backendChoice(backends: readonly { name: string; imagesPerSecond: number | null; skipped?: string }[] | undefined): string {
  if (!backends || backends.length === 0) return '';
  return backends
    .map((b) => {
      const speed = b.imagesPerSecond === null ? 'not measured' : `${number(b.imagesPerSecond, 3)} img/s`;
      return `${b.name}: ${speed}${b.skipped === undefined ? ' (chosen)' : `, not used: ${b.skipped}`}`;
    })
    .join('\n');
}
