import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { StepRecord } from '@chorus/protocol';
import { createRunProgress, formatDuration, progressLine } from '../src/ops/progress.js';

const record = (step: number): StepRecord => ({
  step, loss: 1.23456, accuracy: 0.5, lr: 0.1, seconds: 0.5, imagesPerSecond: 256.04, workers: 2,
  examples: 128, shards: 2, time: 0, perWorker: {}, breakdown: { computeMs: 1, transferMs: 1, waitMs: 0, reduceMs: 0, optimizerMs: 0, broadcastMs: 0 },
});

/** A stream that is not a terminal, as a pipe or a log file is. */
function pipe(): { stream: NodeJS.WriteStream; lines: string[] } {
  const lines: string[] = [];
  const stream = { isTTY: false, write: (text: string) => lines.push(...text.split('\n').filter(Boolean)) } as unknown as NodeJS.WriteStream;
  return { stream, lines };
}

test('durations read as a person would say them', () => {
  assert.equal(formatDuration(null), '-');
  assert.equal(formatDuration(Infinity), '-');
  assert.equal(formatDuration(42.4), '42s');
  assert.equal(formatDuration(62), '1m02s');
  assert.equal(formatDuration(3 * 3600 + 5 * 60 + 9), '3h05m');
});

test('the plain progress line is a log line with step / steps, loss, accuracy, images/s, workers and ETA', () => {
  assert.equal(
    progressLine(record(120), 11719, 3725, new Date(0)),
    '1970-01-01T00:00:00.000Z info  progress step=120/11719 percent=1.0 loss=1.235 accuracy=0.5 images_per_second=256.0 workers=2 eta=1h02m',
  );
});

test('on a pipe: one line at most every interval, and always the last step', () => {
  let now = 0;
  const { stream, lines } = pipe();
  const progress = createRunProgress({ totalSteps: 10, fromStep: 0, stream, plainEveryMs: 1000, now: () => now });
  for (let step = 1; step <= 10; step++) {
    progress.step(record(step), 5);
    now += 300;
  }
  progress.writeLine('a log line');
  progress.stop();
  assert.deepEqual(lines.map((l) => /step=(\S+)/.exec(l)?.[1] ?? l), ['1/10', '5/10', '9/10', '10/10', 'a log line']);
  assert.match(lines[3], /eta=0s$/);
});
