import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const cli = resolve(here, '../dist/cli.js');
const data = process.env.CHORUS_CIFAR_DIR ?? resolve(here, '../../../../shared/datasets/cifar-10-batches-bin');

test('the CLI trains on real CIFAR-10, reports its backend and writes a summary', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-cli-'));
  try {
    const report = join(dir, 'report.json');
    const { stdout } = await run(process.execPath, [
      cli, '--preset', 'tiny', '--steps', '3', '--batch', '32', '--data', data,
      '--eval-examples', '64', '--report', report,
    ], { timeout: 240_000 });
    assert.match(stdout, /^backend: \S+ \(tf backend/m);
    assert.match(stdout, /data: .* \(50000 train, 10000 test images\)/);
    assert.match(stdout, /done: 3 steps .* test accuracy [\d.]+% on 64 images/);
    const summary = JSON.parse(await readFile(report, 'utf8'));
    assert.equal(summary.steps, 3);
    assert.equal(summary.evalExamples, 64);
    assert.ok(summary.testAccuracy >= 0 && summary.testAccuracy <= 1);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('bad options are refused with a clear message and a non-zero exit', async () => {
  await assert.rejects(run(process.execPath, [cli, '--batch', '0']), (e: { stderr: string; code: number }) => {
    assert.match(e.stderr, /--batch must be a positive integer/);
    assert.notEqual(e.code, 0);
    return true;
  });
  await assert.rejects(run(process.execPath, [cli, '--preset', 'nope']), /Allowed choices are resnet20v2/);
  await assert.rejects(
    run(process.execPath, [cli, '--preset', 'tiny', '--steps', '1', '--data', '/nonexistent-chorus-dir']),
    (e: { stderr: string }) => {
      assert.match(e.stderr, /error: .*nonexistent-chorus-dir/);
      return true;
    },
  );
});
