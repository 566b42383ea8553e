import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { selectNodeBackend } from '@chorus/backend/node';
import { gatherExamples } from '@chorus/data';
import { loadCifar10 } from '@chorus/data/node';
import { PRESETS, buildGraph, initialParams, weightLayout } from '@chorus/model';
import { Proc, cifarDir, referenceShardGradient, relativeMaxDiff, startCoordinator, startWorker, waitFor, workerCli } from './support.js';

/**
 * The Node worker's WebGPU path (Dawn through the `webgpu` package) on Mesa's software Vulkan
 * driver, lavapipe: no GPU needed, so it runs on CI (.ci/install-vulkan installs it). Dawn
 * needs Mesa 24 or newer (bookworm-backports; bookworm's own 22.x finds no adapter).
 */
function whyNot(): string | false {
  const libDirs = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib'];
  if (!libDirs.some((d) => existsSync(join(d, 'libvulkan.so.1')))) return 'no Vulkan loader (libvulkan.so.1): run .ci/install-vulkan (as root)';
  const icdDir = '/usr/share/vulkan/icd.d';
  if (!existsSync(icdDir) || !readdirSync(icdDir).some((f) => f.startsWith('lvp_icd'))) return "no lavapipe (Mesa's software Vulkan): run .ci/install-vulkan (as root)";
  try {
    createRequire(import.meta.url).resolve('webgpu', { paths: [join(import.meta.dirname, '../packages/backend')] });
  } catch {
    return 'the optional `webgpu` package is not installed';
  }
  return false;
}
// On CI, where .ci/install-vulkan ran, a missing piece is a failure, not a skip.
const skip = process.env.CI ? false : whyNot();
if (process.env.CI && whyNot()) throw new Error(`CI must run the Node WebGPU tests: ${whyNot()}`);

tf.env().set('PROD', true);

const tinyRun = (batch: number, steps: number) => ['--preset', 'tiny', '--batch', String(batch), '--bn-group', '4', '--steps', String(steps), '--eval-examples', '16', '--lr', '0.1', '--seed', '5'];

interface WorkerRow {
  id: string;
  backend: string;
  device: string;
  shardsDone: number;
  backends: { name: string; imagesPerSecond: number | null; skipped?: string }[];
}

test('--backend webgpu passes the self-test on lavapipe and trains a tiny run next to a worker that picks WASM over it', { skip, timeout: 240_000 }, async () => {
  const c = await startCoordinator([...tinyRun(16, 30), '--min-workers', '2']);
  const gpu = startWorker(c.url, c.token, ['--backend', 'webgpu', '--name', 'gpu']);
  // The default chain: lavapipe passes its self-test, but a software adapter must not win.
  const auto = new Proc([workerCli, c.url, '--token', c.token, '--name', 'auto']);
  try {
    assert.equal(await c.proc.exit(180_000), 0, c.proc.output);
    assert.match(gpu.output, /backend chosen name=\S+ backend=webgpu tf=webgpu device="[^"\n]*llvmpipe[^"\n]*\(software rendering\)"/);
    // The default worker timed both on the run's model and printed what it measured.
    assert.match(auto.output, /backend chosen [^\n]* timedOn=tiny/);
    assert.match(auto.output, /backend chosen name=\S+ backend=wasm tf=wasm device="[^"\n]*" imagesPerSecond=[\d.]+ /);
    assert.match(auto.output, /backend passed over name=\S+ backend=webgpu imagesPerSecond=[\d.]+ device="[^"\n]*llvmpipe[^"\n]*" reason="software rendering, never preferred over wasm/);
    const history = c.proc.output;
    assert.match(history, /joined \(node, webgpu, [^)]*llvmpipe/);
    assert.match(history, /joined \(node, wasm, /);
  } finally {
    await Promise.all([gpu.kill(), auto.kill(), c.proc.kill()]);
  }
  // Both trained until the run ended: the only error either saw is the coordinator's shutdown.
  for (const w of [gpu, auto]) {
    assert.match(w.output, /joined as w\d+ name=\S+ preset=tiny /);
    assert.match(w.output, /shards done/);
    const errors = (w.output.match(/^\S+ error .*$/gm) ?? []).map((line) => line.replace(/^\S+ error /, '').replace(/ name=\S+$/, ''));
    assert.deepEqual(errors, ['the coordinator refused this worker: coordinator shutting down']);
  }
});

test('the coordinator lists what each worker measured (runtime.backends) for the dashboard', { skip, timeout: 180_000 }, async () => {
  const c = await startCoordinator([...tinyRun(16, 100000), '--min-workers', '2']);
  const gpu = startWorker(c.url, c.token, ['--backend', 'webgpu', '--name', 'gpu']);
  const auto = new Proc([workerCli, c.url, '--token', c.token, '--name', 'auto']);
  try {
    const workers = await waitFor(
      'both workers to have trained',
      async () => {
        const rows = (await c.status()).workers as unknown as WorkerRow[];
        return rows.length === 2 && rows.every((w) => w.shardsDone >= 3) ? rows : null;
      },
      150_000,
    );
    const webgpu = workers.find((w) => w.backend === 'webgpu')!;
    const wasm = workers.find((w) => w.backend === 'wasm')!;
    assert.ok(webgpu && wasm, JSON.stringify(workers));
    assert.match(webgpu.device, /llvmpipe/);
    // Forced: one candidate, not timed.
    assert.deepEqual(webgpu.backends, [{ name: 'webgpu', imagesPerSecond: null }]);
    const byName = new Map(wasm.backends.map((b) => [b.name, b]));
    assert.deepEqual([...byName.keys()], ['tfjs-node-gpu', 'webgpu', 'tfjs-node', 'wasm']);
    assert.equal(byName.get('wasm')!.skipped, undefined);
    assert.ok(byName.get('wasm')!.imagesPerSecond! > 0);
    assert.ok(byName.get('webgpu')!.imagesPerSecond! > 0);
    assert.match(byName.get('webgpu')!.skipped!, /software rendering/);
  } finally {
    await Promise.all([gpu.kill(), auto.kill(), c.proc.kill()]);
  }
});

test('the same shard gives the same gradient on WebGPU (lavapipe) as on WASM', { skip, timeout: 180_000 }, async (t) => {
  const data = await loadCifar10(cifarDir);
  const spec = PRESETS.tiny;
  const layout = weightLayout(buildGraph(spec));
  // Two micro-batches of two BatchNorm groups each, with augmentation: the worker's whole path.
  const shard = { bnGroup: 4, microBatch: 8, augmentSeed: 20240611 };
  const indices = Int32Array.from({ length: 16 }, (_, i) => 97 * i + 5);
  const { pixels, labels } = gatherExamples(data.train, indices);
  const params = initialParams(layout, 7);
  const compute = () => referenceShardGradient(spec, params, { ...shard, pixels, labels, indices });
  const gpuChoice = await selectNodeBackend({ force: 'webgpu' });
  assert.equal(tf.getBackend(), 'webgpu');
  assert.ok(gpuChoice.candidates[0].software, gpuChoice.device);
  const gpu = await compute();
  await selectNodeBackend({ force: 'wasm' });
  const ref = await compute();

  const relMax = relativeMaxDiff;
  // As in test/browser.test.ts: per tensor on its own scale, but at least 1e-3 of the largest
  // gradient (the conv biases in front of a BatchNorm have an exactly zero true gradient).
  const overallScale = ref.gradient.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const worst = Math.max(
    ...layout.params.map((p) => {
      let diff = 0;
      let scale = 1e-3 * overallScale;
      for (let i = p.offset; i < p.offset + p.size; i++) {
        diff = Math.max(diff, Math.abs(gpu.gradient[i] - ref.gradient[i]));
        scale = Math.max(scale, Math.abs(ref.gradient[i]));
      }
      return diff / scale;
    }),
  );
  const overall = relMax(gpu.gradient, ref.gradient);
  const moments = relMax(gpu.bn.moments, ref.bn.moments);
  t.diagnostic(`WebGPU (lavapipe) vs WASM: gradient max|diff|/max|ref| ${overall.toExponential(2)}, worst tensor ${worst.toExponential(2)}, BN moments ${moments.toExponential(2)}`);
  assert.equal(gpu.count, 16);
  assert.ok(Math.abs(gpu.lossSum - ref.lossSum) <= 1e-4 * Math.abs(ref.lossSum), `loss ${gpu.lossSum} vs ${ref.lossSum}`);
  assert.equal(gpu.correct, ref.correct);
  assert.ok(moments <= 1e-4, `BatchNorm moments differ by ${moments}`);
  // The browser agreement test's cross-backend tolerance (see its comment for the reasoning).
  assert.ok(overall <= 5e-3, `gradient differs by ${overall} (max|diff|/max|ref|)`);
  assert.ok(worst <= 2.5e-2, `worst tensor differs by ${worst}`);
});
