import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const hook = fileURLToPath(new URL('./fixtures/report-tfjs-imports.mjs', import.meta.url));

// The coordinator loads TensorFlow.js only to export a model: in every other run it would be
// 15 MB of heap that each full garbage collection walks, step after step.
test('the coordinator CLI does not load TensorFlow.js unless it exports', { timeout: 60_000 }, async () => {
  const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', '--import', hook, cli, '--help'], { timeout: 50_000 }, (error, stdout, stderr) =>
      error ? reject(Object.assign(error, { stderr })) : resolve({ stdout, stderr }),
    );
  });
  assert.match(stdout, /chorus-coordinator/);
  assert.doesNotMatch(stderr, /TFJS-IMPORT/, stderr);
});

test('the hook itself sees an import of TensorFlow.js (so the test above can fail)', { timeout: 60_000 }, async () => {
  const stderr = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--import', hook, '--input-type=module', '-e', "await import('@tensorflow/tfjs')"], { timeout: 50_000, cwd: fileURLToPath(new URL('..', import.meta.url)) }, (error, _stdout, stderr) =>
      error ? reject(Object.assign(error, { stderr })) : resolve(stderr),
    );
  });
  assert.match(stderr, /TFJS-IMPORT @tensorflow\/tfjs/);
});
