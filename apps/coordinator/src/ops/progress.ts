import cliProgress from 'cli-progress';
import { formatLogLine, type StepRecord } from '@chorus/protocol';

/** The run's progress on the coordinator's terminal, and a way for other lines to pass it. */
export interface RunProgress {
  /** A finished step; `workers` is how many trained it. */
  step(record: StepRecord, etaSeconds: number | null): void;
  /** Writes a whole line (a log line, a local worker's line) without tearing the bar. */
  writeLine(line: string): void;
  stop(): void;
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '-';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/** The numbers of one step as the progress shows them. */
export function progressFields(record: StepRecord, totalSteps: number, etaSeconds: number | null): Record<string, string> {
  return {
    loss: Number.isFinite(record.loss) ? record.loss.toFixed(3) : String(record.loss),
    acc: `${(100 * record.accuracy).toFixed(1)}%`,
    ips: record.imagesPerSecond.toFixed(1),
    workers: String(record.workers),
    eta: record.step >= totalSteps ? '0s' : formatDuration(etaSeconds),
  };
}

/**
 * One log line for a log file or a pipe, where a redrawn bar would be noise: structured like
 * every other line (formatLogLine), so the progress can be grepped and parsed too.
 */
export function progressLine(record: StepRecord, totalSteps: number, etaSeconds: number | null, time?: Date): string {
  const f = progressFields(record, totalSteps, etaSeconds);
  return formatLogLine('info', 'progress', {
    step: `${record.step}/${totalSteps}`,
    percent: ((100 * record.step) / totalSteps).toFixed(1),
    loss: f.loss,
    accuracy: Number(record.accuracy.toFixed(4)),
    images_per_second: f.ips,
    workers: Number(f.workers),
    eta: f.eta,
  }, time);
}

/**
 * A live bar on a terminal (other lines are printed above it), or on a pipe a plain line at
 * most every `plainEveryMs` and at the last step.
 */
export function createRunProgress(opts: {
  totalSteps: number;
  fromStep: number;
  stream?: NodeJS.WriteStream;
  plainEveryMs?: number;
  now?: () => number;
}): RunProgress {
  const stream = opts.stream ?? process.stdout;
  const { totalSteps } = opts;
  if (!stream.isTTY) {
    const every = opts.plainEveryMs ?? 10_000;
    const now = opts.now ?? Date.now;
    let last = -Infinity;
    return {
      step(record, eta) {
        const t = now();
        if (record.step < totalSteps && t - last < every) return;
        last = t;
        stream.write(`${progressLine(record, totalSteps, eta)}\n`);
      },
      writeLine: (line) => void stream.write(`${line}\n`),
      stop() {},
    };
  }
  const bars = new cliProgress.MultiBar(
    {
      stream,
      format: 'step {value}/{total} |{bar}| loss {loss} | acc {acc} | {ips} img/s | {workers} workers | eta {eta}',
      hideCursor: true,
      clearOnComplete: false,
      // The coordinator is idle between steps; a redraw a second keeps the bar cheap.
      fps: 2,
    },
    cliProgress.Presets.shades_classic,
  );
  const bar = bars.create(totalSteps, opts.fromStep, { loss: '-', acc: '-', ips: '-', workers: '-', eta: '-' });
  let stopped = false;
  return {
    step(record, eta) {
      if (!stopped) bar.update(record.step, progressFields(record, totalSteps, eta));
    },
    writeLine(line) {
      if (stopped) stream.write(`${line}\n`);
      else bars.log(`${line}\n`);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bars.stop();
    },
  };
}
