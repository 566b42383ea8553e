import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { Proc, cifarDir, coordinatorCli, repoRoot, startCoordinator, waitFor } from './support.js';

test('the main command starts a coordinator with a local worker, prints its URLs and trains to the end', { timeout: 180_000 }, async () => {
  // `npm start` runs this with the default preset; a tiny run checks the same path quickly.
  const proc = new Proc([coordinatorCli, '--local-workers', '1', '--worker-backend', 'wasm', '--port', '0', '--data', cifarDir, '--preset', 'tiny', '--steps', '3', '--batch', '32', '--eval-examples', '64']);
  try {
    assert.equal(await proc.exit(), 0, proc.output);
    for (const label of ['token', 'dashboard', 'join \\(tab\\)', 'metrics', 'worker']) assert.match(proc.output, new RegExp(`^  ${label}:\\s+\\S+`, 'm'));
    assert.match(proc.output, /backend chosen name=local-1 backend=wasm /);
    assert.match(proc.output, /event=join/);
    assert.match(proc.output, /test accuracy [\d.]+% at step 3 \(64 images\)/);
    assert.match(proc.output, /training finished at step 3/);
  } finally {
    await proc.kill('SIGKILL');
  }
});

test('the worker command the banner prints, run verbatim from the repository root, joins the run', { timeout: 180_000 }, async () => {
  const c = await startCoordinator(['--preset', 'tiny', '--steps', '100000', '--batch', '32', '--bn-group', '8', '--eval-examples', '64']);
  let shell: ChildProcess | undefined;
  let output = '';
  try {
    const command = /^ {2}worker:\s+(.+)$/m.exec(c.proc.output)?.[1];
    assert.ok(command, c.proc.output);
    assert.match(command, /^npx chorus-worker ws:\/\/127\.0\.0\.1:\d+\/ws --token \S+$/);
    // Exactly what a newcomer pastes into a shell in the repository; its own process group,
    // so npx and the worker it starts are stopped together.
    shell = spawn('sh', ['-c', command], { cwd: repoRoot, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_yes: 'false' } });
    shell.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    shell.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const joined = await waitFor('the pasted worker to join and train', async () => {
      if (shell!.exitCode !== null) throw new Error(`the command exited with ${shell!.exitCode}:\n${output}`);
      const worker = (await c.status()).workers.find((w) => w.state !== 'left' && w.shardsDone > 0);
      return worker ?? null;
    }, 120_000);
    assert.equal(joined.kind, 'node');
    assert.match(output, /joined as w\d+/);
  } finally {
    if (shell?.pid !== undefined && shell.exitCode === null) {
      try {
        process.kill(-shell.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await c.proc.kill();
  }
});
