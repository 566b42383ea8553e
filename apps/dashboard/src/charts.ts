import uPlot from 'uplot';
import { millis, number, percent, rate } from './format.js';
import { alignSeries, recentBreakdowns, workerIds } from './state.js';
import { BREAKDOWN_PARTS, type EvalRecord, type StepRecord } from './types.js';

const PALETTE = ['#3b7dd8', '#e8a33d', '#5aa469', '#d25f6a', '#9c6ad0', '#2fa7a0', '#b5813b', '#6b7a8f', '#d76fb0', '#7aa33b'];
const HEIGHT = 220;
/** Steps are whole numbers: ticks at 1, 2, 5, 10, 20, 50... steps apart. */
const STEP_INCREMENTS = Array.from({ length: 8 }, (_, e) => [1, 2, 5].map((m) => m * 10 ** e)).flat();

export interface SeriesSpec {
  label: string;
  color: string;
  /** Draw the points (sparse series such as evaluations). */
  points?: boolean;
  /** Connect across missing values. */
  spanGaps?: boolean;
  dash?: number[];
  width?: number;
}

type Data = [number[], ...(number | null)[][]];

/** Legend value of a sparse series (evaluations): its latest value at or before the cursor. */
const lastKnown = (fmt: (v: number) => string) => (u: uPlot, _v: number | null, si: number, idx: number | null): string => {
  const column = u.data[si];
  if (idx === null || !column) return '–';
  for (let i = Math.min(idx, column.length - 1); i >= 0; i -= 1) {
    const y = column[i];
    if (y !== null && y !== undefined) return fmt(y);
  }
  return '–';
};

/**
 * One uPlot chart in a container: sized to the container's width, recreated when its series
 * change (workers come and go), its data replaced on each render.
 */
export class LiveChart {
  private plot: uPlot | null = null;
  private seriesKey = '';
  private readonly container: HTMLElement;
  private readonly format: (v: number) => string;
  private readonly extra: Partial<uPlot.Options>;
  private readonly observer: ResizeObserver;

  constructor(container: HTMLElement, format: (v: number) => string, extra: Partial<uPlot.Options> = {}) {
    this.container = container;
    this.format = format;
    this.extra = extra;
    this.observer = new ResizeObserver(() => this.plot?.setSize({ width: this.width(), height: HEIGHT }));
    this.observer.observe(container);
  }

  private width(): number {
    return Math.max(240, Math.floor(this.container.clientWidth));
  }

  /** Replaces the data; `series` are the y series, in the order of data[1...]. */
  set(series: (SeriesSpec & { value?: uPlot.Series.Value; fill?: string; paths?: uPlot.Series.PathBuilder })[], data: Data): void {
    const key = JSON.stringify(series.map((s) => [s.label, s.color, s.points ?? false, s.dash ?? null]));
    if (this.plot === null || key !== this.seriesKey) {
      this.plot?.destroy();
      this.seriesKey = key;
      const fmt = this.format;
      const opts: uPlot.Options = {
        width: this.width(),
        height: HEIGHT,
        scales: { x: { time: false } },
        legend: { live: true },
        cursor: { drag: { x: true, y: false } },
        axes: [
          { label: 'step', labelSize: 18, size: 36, stroke: '#5b6472', grid: { stroke: '#eceef2' }, ticks: { stroke: '#d9dde3' }, incrs: STEP_INCREMENTS },
          { size: 64, stroke: '#5b6472', grid: { stroke: '#eceef2' }, ticks: { stroke: '#d9dde3' }, values: (_u, ticks) => ticks.map((t) => fmt(t)) },
        ],
        series: [
          { label: 'step', value: (_u, v) => (v === null || v === undefined ? '–' : String(v)) },
          ...series.map((s) => ({
            label: s.label,
            stroke: s.color,
            width: s.width ?? 1.5,
            spanGaps: s.spanGaps ?? false,
            ...(s.dash ? { dash: s.dash } : {}),
            ...(s.fill ? { fill: s.fill } : {}),
            ...(s.paths ? { paths: s.paths } : {}),
            points: s.points ? { show: true, size: 6, fill: s.color } : { show: false },
            value: s.value ?? (s.points ? lastKnown(fmt) : (_u: uPlot, v: number | null) => (v === null || v === undefined ? '–' : fmt(v))),
          })),
        ],
        ...this.extra,
      };
      this.plot = new uPlot(opts, data as uPlot.AlignedData, this.container);
    } else {
      this.plot.setData(data as uPlot.AlignedData);
    }
    // Unless the pointer is on the chart, the legend shows the latest values.
    const n = data[0].length;
    if (n > 0 && !(this.plot.cursor.left !== undefined && this.plot.cursor.left >= 0)) this.plot.setLegend({ idx: n - 1 });
    // What the tests (and a curious person with devtools) can read: how many x values are drawn.
    this.container.dataset.points = String(data[0].length);
  }
}

const isNumber = (x: number | null | undefined): x is number => typeof x === 'number' && Number.isFinite(x);

export function lossData(steps: StepRecord[], evals: EvalRecord[]): { series: SeriesSpec[]; data: Data } {
  const series: SeriesSpec[] = [{ label: 'train loss', color: PALETTE[0] }];
  const columns = [{ x: steps.map((s) => s.step), y: steps.map((s) => s.loss) }];
  if (evals.length > 0) {
    series.push({ label: 'test loss', color: PALETTE[3], points: true, spanGaps: true, dash: [4, 4] });
    columns.push({ x: evals.map((e) => e.step), y: evals.map((e) => e.loss) });
  }
  return { series, data: alignSeries(columns) };
}

export function accuracyData(steps: StepRecord[], evals: EvalRecord[]): { series: SeriesSpec[]; data: Data } {
  return {
    series: [
      { label: 'train accuracy', color: PALETTE[0] },
      { label: 'test accuracy', color: PALETTE[3], points: true, spanGaps: true, width: 2 },
    ],
    data: alignSeries([
      { x: steps.map((s) => s.step), y: steps.map((s) => s.accuracy) },
      { x: evals.map((e) => e.step), y: evals.map((e) => e.accuracy) },
    ]),
  };
}

export function throughputData(steps: StepRecord[]): { series: SeriesSpec[]; data: Data } {
  const ids = workerIds(steps);
  const x = steps.map((s) => s.step);
  return {
    series: [
      { label: 'total', color: '#1d2430', width: 2 },
      ...ids.map((id, i) => ({ label: id, color: PALETTE[i % PALETTE.length] })),
    ],
    data: [
      x,
      steps.map((s) => (isNumber(s.imagesPerSecond) ? s.imagesPerSecond : null)),
      ...ids.map((id) => steps.map((s) => (isNumber(s.perWorker?.[id]) ? s.perWorker[id] : null))),
    ],
  };
}

/** Stacked bars of the breakdown of the last `count` steps: cumulative sums, top part first. */
export function breakdownData(steps: StepRecord[], count: number) {
  const recent = recentBreakdowns(steps, count);
  const raw = BREAKDOWN_PARTS.map((p) => recent.map((s) => Math.max(0, s.breakdown[p.key] ?? 0)));
  const cumulative = raw.map((_, k) => recent.map((_s, i) => raw.slice(0, k + 1).reduce((a, col) => a + col[i], 0)));
  // Drawn from the total down, each part over the one above it, so the bars look stacked.
  const order = BREAKDOWN_PARTS.map((_, k) => k).reverse();
  const bars = uPlot.paths.bars!({ size: [0.85, 24], gap: 1 });
  return {
    series: order.map((k) => ({
      label: BREAKDOWN_PARTS[k].label,
      color: BREAKDOWN_PARTS[k].color,
      fill: BREAKDOWN_PARTS[k].color,
      paths: bars,
      width: 0,
      // The part itself: this series' cumulative value less the one below it (drawn next).
      value: (u: uPlot, _v: number | null, si: number, idx: number | null) => {
        const top = idx === null ? null : u.data[si]?.[idx];
        if (idx === null || top === null || top === undefined) return '–';
        const below = si + 1 < u.data.length ? (u.data[si + 1][idx] ?? 0) : 0;
        return millis(top - below);
      },
    })),
    data: [recent.map((s) => s.step), ...order.map((k) => cumulative[k])] as Data,
  };
}

export const formats = {
  loss: (v: number) => number(v, 3),
  accuracy: (v: number) => percent(v, 0),
  rate: (v: number) => rate(v).replace('/s', ''),
  ms: (v: number) => millis(v),
};
