import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Proc, cifarDir, coordinatorCli } from './support.js';

test('the main command starts a coordinator with a local worker, prints its URLs and trains to the end', { timeout: 180_000 }, async () => {
  // `npm start` runs this with the default preset; a tiny run checks the same path quickly.
  const proc = new Proc([coordinatorCli, '--local-workers', '1', '--worker-backend', 'wasm', '--port', '0', '--data', cifarDir, '--preset', 'tiny', '--steps', '3', '--batch', '32', '--eval-examples', '64']);
  try {
    assert.equal(await proc.exit(), 0, proc.output);
    for (const label of ['token', 'dashboard', 'join \\(tab\\)', 'metrics', 'worker']) assert.match(proc.output, new RegExp(`^  ${label}:\\s+\\S+`, 'm'));
    assert.match(proc.output, /\[local-1\] backend: wasm/);
    assert.match(proc.output, /event=join/);
    assert.match(proc.output, /test accuracy [\d.]+% at step 3 \(64 images\)/);
    assert.match(proc.output, /training finished at step 3/);
  } finally {
    await proc.kill('SIGKILL');
  }
});
