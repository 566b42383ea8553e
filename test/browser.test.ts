import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BATCH_NORM_KERNEL, registerWasmTrainingKernels, setSimdKernelsEnabled } from '@chorus/backend';
import { selectNodeBackend } from '@chorus/backend/node';
import { decodeCheckpoint } from '@chorus/coordinator';
import { gatherExamples } from '@chorus/data';
import { loadCifar10 } from '@chorus/data/node';
import { PRESETS, buildGraph, initialParams, weightLayout } from '@chorus/model';
import { launchChromium, serveBundle, skipBrowserTests, type Chromium, type Tab } from './browser-support.js';
import { cifarDir, referenceShardGradient, startCoordinator, startWorker, waitFor, type CoordinatorProc } from './support.js';

/**
 * The browser worker end to end: Debian's headless Chromium opens the coordinator's /join
 * page. Without a GPU, WebGPU runs on SwiftShader (a "fallback adapter"): correct but slow, so
 * these runs use the tiny preset and small batches.
 */
const skip = skipBrowserTests;
tf.env().set('PROD', true);
await selectNodeBackend({ force: 'wasm' });

const joinUrl = (c: CoordinatorProc, query = '') => `http://127.0.0.1:${c.port}/join?token=${encodeURIComponent(c.token)}${query}`;
const tinyRun = (batch: number, steps: number, extra: string[] = []) => [
  '--preset', 'tiny', '--batch', String(batch), '--bn-group', '4', '--steps', String(steps), '--eval-examples', '16', '--lr', '0.1', '--seed', '3', ...extra,
];

type WorkerStatus = Awaited<ReturnType<CoordinatorProc['status']>>['workers'][number] & { device: string };

async function finalHistory(dir: string) {
  const files = (await readdir(dir)).filter((f) => /^checkpoint-\d+\.chorus$/.test(f)).sort();
  const state = decodeCheckpoint(new Uint8Array(await readFile(join(dir, files.at(-1)!))));
  return { step: state.step, ...(state.history as { steps: { step: number; examples: number }[]; events: { kind: string; message: string }[] }) };
}

/** What window.chorus.computeGradient returns, with plain arrays. */
type RemoteGradient = { count: number; lossSum: number; correct: number; gradient: number[]; bnMoments: number[]; tensorsBefore: number; tensorsAfter: number };

/** A ?selftest tab computes one shard (arrays go as plain numbers). */
function remoteGradient(tab: Tab, shard: { spec: unknown; bnGroup: number; microBatch: number; augmentSeed: number; params: Float32Array; pixels: Uint8Array; labels: Uint8Array; indices: Int32Array }): Promise<RemoteGradient> {
  return tab.page.evaluate(
    (request) => (window as unknown as { chorus: { computeGradient(r: unknown): Promise<RemoteGradient> } }).chorus.computeGradient(request),
    { ...shard, params: Array.from(shard.params), pixels: Array.from(shard.pixels), labels: Array.from(shard.labels), indices: Array.from(shard.indices) },
  );
}

test('a browser tab on WebGPU trains with a Node worker; the coordinator lists it; hidden tabs are throttled; Leave says bye', { skip, timeout: 300_000 }, async () => {
  const c = await startCoordinator([...tinyRun(16, 200), '--min-workers', '2']);
  const node = startWorker(c.url, c.token);
  // Launched inside the try: if Chromium fails to start, what the test started is still stopped.
  let chromium: Chromium | undefined;
  try {
    chromium = await launchChromium();
    const tab = await chromium.open(joinUrl(c, '&backend=webgpu'));
    const joined = await tab.waitFor('the tab to join', (s) => (s.status?.workerId ? s : null));
    const id = joined.status!.workerId!;
    assert.equal(joined.backend?.tfBackend, 'webgpu');
    // The page shows the backend and the WebGPU adapter it got.
    assert.equal(await tab.page.textContent('#backend'), 'webgpu');
    const adapterText = (await tab.page.textContent('#adapter')) ?? '';
    assert.match(adapterText, /vendor: .*architecture: .*description: .*isFallbackAdapter: (true|false)/);
    assert.equal(typeof joined.backend?.adapter?.isFallbackAdapter, 'boolean');

    const seen = await waitFor(
      'the tab to have done shards',
      async () => {
        const w = (await c.status()).workers.find((x) => x.id === id) as WorkerStatus | undefined;
        return w && w.shardsDone >= 2 ? w : null;
      },
      120_000,
    );
    assert.equal(seen.kind, 'browser');
    assert.equal(seen.backend, 'webgpu');
    assert.match(seen.device, /^WebGPU: /);
    const both = (await c.status()).workers;
    assert.ok(both.some((w) => w.kind === 'node' && w.shardsDone > 0), 'the Node worker trains too');

    // The page shows the tab's own progress.
    const progress = await tab.waitFor('progress on the page', (s) => s.status && s.status.stepsDone >= 2 && s.status.lastLoss !== null && s);
    assert.ok(progress.status!.lastShard > 0 && progress.status!.lastShard % 4 === 0, `shard of ${progress.status!.lastShard}`);
    assert.match((await tab.page.textContent('#share')) ?? '', /^\d+ images/);
    assert.match((await tab.page.textContent('#speed')) ?? '', /images\/s$/);

    // Hidden: the page tells the Web Worker, whose heartbeat tells the coordinator.
    await tab.setHidden(true);
    const stateOf = async () => (await c.status()).workers.find((x) => x.id === id)?.state;
    await waitFor('the coordinator to throttle the hidden tab', async () => (await stateOf()) === 'throttled', 20_000);
    await tab.setHidden(false);
    await waitFor('the tab to be visible again', async () => (await stateOf()) === 'training', 20_000);

    // Leave: the runtime says bye and the coordinator lets the tab go; the Node worker goes on.
    await tab.page.click('#leave');
    await waitFor('the coordinator to see the tab leave', async () => (await stateOf()) === 'left', 20_000);
    const events = (await c.status()).events;
    assert.ok(events.some((e) => e.kind === 'leave' && e.message === `worker ${id} left: left from the page`), events.map((e) => e.message).join('\n'));
    const left = await tab.waitFor('the page to say it left', (s) => s.phase === 'left' && s);
    assert.equal(left.error, null);
    assert.equal(await tab.page.isDisabled('#leave'), true);
    const step = (await c.status()).step;
    await waitFor('a step without the tab', async () => (await c.status()).step > step, 30_000);
  } finally {
    await chromium?.close();
    await node.kill();
    await c.proc.kill();
  }
});

test('the same shard gives the same gradient in the tab (WebGPU) as in Node (WASM)', { skip, timeout: 300_000 }, async (t) => {
  const server = await serveBundle();
  let chromium: Chromium | undefined;
  try {
    chromium = await launchChromium();
    const tab = await chromium.open(`${server.url}/join?selftest&backend=webgpu`);
    await tab.waitFor('the WebGPU backend', (s) => s.phase === 'selftest-ready');

    const data = await loadCifar10(cifarDir);
    const spec = PRESETS.tiny;
    const layout = weightLayout(buildGraph(spec));
    // Two micro-batches of two BatchNorm groups each, with augmentation: the worker's whole path.
    const shard = { spec, bnGroup: 4, microBatch: 8, augmentSeed: 20240611 };
    const indices = Int32Array.from({ length: 16 }, (_, i) => 97 * i + 5);
    const { pixels, labels } = gatherExamples(data.train, indices);
    const params = initialParams(layout, 7);

    const remote = await remoteGradient(tab, { ...shard, params, pixels, labels, indices });
    const local = () => referenceShardGradient(spec, params, { ...shard, pixels, labels, indices });
    const ref = await local();
    // Calibration: the same computation on tfjs' plain JavaScript backend, also against WASM.
    await tf.setBackend('cpu');
    const cpu = await local();
    await tf.setBackend('wasm');

    const relMax = (a: ArrayLike<number>, b: ArrayLike<number>, from = 0, to = b.length) => {
      let diff = 0;
      let scale = 0;
      for (let i = from; i < to; i++) {
        diff = Math.max(diff, Math.abs(a[i] - b[i]));
        scale = Math.max(scale, Math.abs(b[i]));
      }
      return diff / scale;
    };
    // Per tensor, on its own scale, but at least 1e-3 of the largest gradient: the conv biases in
    // front of a BatchNorm have an exactly zero true gradient, so theirs is pure rounding noise.
    const overallScale = ref.gradient.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const worstTensor = (a: ArrayLike<number>) =>
      Math.max(
        ...layout.params.map((p) => {
          let diff = 0;
          let scale = 1e-3 * overallScale;
          for (let i = p.offset; i < p.offset + p.size; i++) {
            diff = Math.max(diff, Math.abs(a[i] - ref.gradient[i]));
            scale = Math.max(scale, Math.abs(ref.gradient[i]));
          }
          return diff / scale;
        }),
      );
    const webgpu = { overall: relMax(remote.gradient, ref.gradient), worst: worstTensor(remote.gradient), moments: relMax(remote.bnMoments, ref.bn.moments) };
    const plainJs = { overall: relMax(cpu.gradient, ref.gradient), worst: worstTensor(cpu.gradient), moments: relMax(cpu.bn.moments, ref.bn.moments) };
    t.diagnostic(`WebGPU vs WASM: gradient max|diff|/max|ref| ${webgpu.overall.toExponential(2)}, worst tensor ${webgpu.worst.toExponential(2)}, BN moments ${webgpu.moments.toExponential(2)}`);
    t.diagnostic(`CPU    vs WASM: gradient max|diff|/max|ref| ${plainJs.overall.toExponential(2)}, worst tensor ${plainJs.worst.toExponential(2)}, BN moments ${plainJs.moments.toExponential(2)}`);

    assert.equal(remote.count, 16);
    assert.equal(remote.gradient.length, layout.paramCount);
    // The forward pass is well conditioned: loss, hits and batch statistics agree to float32 rounding.
    assert.ok(Math.abs(remote.lossSum - ref.lossSum) <= 1e-4 * Math.abs(ref.lossSum), `loss ${remote.lossSum} vs ${ref.lossSum}`);
    assert.equal(remote.correct, ref.correct);
    assert.ok(webgpu.moments <= 1e-4, `BatchNorm moments differ by ${webgpu.moments}`);
    // Gradients through BatchNorm in training mode are less so: float32 batch statistics can be
    // poorly conditioned, and correct backends have been seen to differ by up to ~2e-3 overall
    // and ~1e-2 in the worst tensor (even CPU vs WASM; with BatchNorm in inference mode they
    // agree to ~1e-5). The tolerance is 2.5x that spread, so another GPU or browser passes; a
    // wrong kernel (a missing term, a transposed filter, a sign) is off by O(1e-1) or more. On
    // this shard the measured differences are far smaller (printed above).
    assert.ok(webgpu.overall <= 5e-3, `gradient differs by ${webgpu.overall} (max|diff|/max|ref|)`);
    assert.ok(webgpu.worst <= 2.5e-2, `worst tensor differs by ${webgpu.worst}`);
    // And nothing was left behind in the tab.
    assert.equal(remote.tensorsAfter, remote.tensorsBefore);
  } finally {
    await chromium?.close();
    await server.close();
  }
});

test('?threads=2 on WASM: two replica workers give a shard the bits of the tab\'s own replica and of Node, isolated or not', { skip, timeout: 300_000 }, async (t) => {
  const server = await serveBundle();
  // A page without cross-origin isolation (plain http from another machine) has no
  // SharedArrayBuffer and no threaded WASM build; its replica workers still train.
  const plain = await serveBundle({ isolated: false });
  let chromium: Chromium | undefined;
  try {
    chromium = await launchChromium();
    const urls = [`${server.url}/join?selftest&backend=wasm&threads=1`, `${server.url}/join?selftest&backend=wasm&threads=2`, `${plain.url}/join?selftest&backend=wasm&threads=2`];
    const tabs = await Promise.all(urls.map((url) => chromium!.open(url)));
    const ready = await Promise.all(tabs.map((tab) => tab.waitFor('the WASM backend', (s) => s.phase === 'selftest-ready' && s)));
    assert.deepEqual(ready.map((s) => s.backend?.replicas), [1, 2, 2]);
    assert.match(ready[1].backend?.device ?? '', /WebAssembly.*threaded build.*, training on 2 replica workers/);
    assert.match(ready[2].backend?.device ?? '', /WebAssembly.*single-threaded\), training on 2 replica workers/);
    assert.equal(await tabs[2].page.evaluate('crossOriginIsolated'), false);

    const data = await loadCifar10(cifarDir);
    const spec = PRESETS.tiny;
    const layout = weightLayout(buildGraph(spec));
    // Six micro-batches of one BatchNorm group, the last a partial one, with augmentation: the
    // replica workers get three each and their sums are added in micro-batch order.
    const indices = Int32Array.from({ length: 22 }, (_, i) => 89 * i + 7);
    const shard = { spec, bnGroup: 4, microBatch: 4, augmentSeed: 77, ...gatherExamples(data.train, indices), indices };
    const bits = (a: ArrayLike<number>) => Buffer.from(Float32Array.from(a).buffer);
    for (const seed of [7, 8]) {
      const params = initialParams(layout, seed);
      const [one, two, notIsolated] = await Promise.all(tabs.map((tab) => remoteGradient(tab, { ...shard, params })));
      const node = await referenceShardGradient(spec, params, shard);
      const what = `weights ${seed}`;
      assert.equal(two.count, 22, what);
      assert.ok(Object.is(two.lossSum, one.lossSum) && Object.is(two.correct, one.correct), `${what}: loss ${two.lossSum} vs ${one.lossSum}`);
      assert.ok(bits(two.gradient).equals(bits(one.gradient)), `${what}: 2 replica workers vs the tab's own replica: gradient bits differ`);
      assert.ok(bits(two.bnMoments).equals(bits(one.bnMoments)), `${what}: BatchNorm moments bits differ`);
      assert.ok(bits(notIsolated.gradient).equals(bits(two.gradient)) && bits(notIsolated.bnMoments).equals(bits(two.bnMoments)), `${what}: a tab that is not cross-origin isolated gives other bits`);
      // The tab's WASM (Chromium's engine, its threaded build) and Node's compute the same bits.
      assert.ok(Object.is(Math.fround(two.lossSum), Math.fround(node.lossSum)), `${what}: loss ${two.lossSum} in the tab vs ${node.lossSum} in Node`);
      assert.ok(bits(two.gradient).equals(bits(node.gradient)), `${what}: the tab's gradient bits differ from Node's`);
      assert.ok(bits(two.bnMoments).equals(bits(node.bn.moments)), `${what}: the tab's BatchNorm moments differ from Node's`);
      if (seed === 7) {
        // Node trains through Chorus' WebAssembly SIMD kernels: the fused BatchNorm + ReLU and
        // the direct filter gradient. Without either, the same shard gives other bits, so the tab
        // ran both.
        const without = async (off: () => void, on: () => void) => {
          off();
          try {
            return await referenceShardGradient(spec, params, shard);
          } finally {
            on();
          }
        };
        const noFusedBn = await without(() => tf.unregisterKernel(BATCH_NORM_KERNEL, 'wasm'), registerWasmTrainingKernels);
        assert.ok(!bits(noFusedBn.gradient).equals(bits(node.gradient)), `${what}: the fused BatchNorm kernels changed no bit`);
        const noSimdConv = await without(() => setSimdKernelsEnabled(false), () => setSimdKernelsEnabled(true));
        assert.ok(!bits(noSimdConv.gradient).equals(bits(node.gradient)), `${what}: the SIMD filter gradient changed no bit`);
      }
      t.diagnostic(`${what}: loss sum ${two.lossSum}, 1 and 2 threads (isolated or not) and Node bit-identical`);
    }
  } finally {
    await chromium?.close();
    await server.close();
    await plain.close();
  }
});

test('closing the tab mid-run: its shard is re-issued and the run reaches its last step', { skip, timeout: 300_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-tab-close-'));
  const steps = 12;
  const c = await startCoordinator([...tinyRun(16, steps), '--min-workers', '2', '--checkpoint-dir', dir, '--checkpoint-every', '100']);
  const node = startWorker(c.url, c.token);
  let chromium: Chromium | undefined;
  try {
    chromium = await launchChromium();
    const tab = await chromium.open(joinUrl(c, '&backend=webgpu'));
    const trained = await tab.waitFor('the tab to train', (s) => s.status && s.status.stepsDone >= 1 && s, 120_000);
    const id = trained.status!.workerId!;
    // Close the tab just after it starts its next shard (WebGPU on SwiftShader needs most of a
    // second for one), so it surely holds one. A string: see setHidden.
    const closedAt = (await c.status()).step;
    await tab.page.waitForFunction(
      `((s) => s !== null && s.stepsDone > ${trained.status!.stepsDone} && s.state === 'training')(window.chorus.state.status)`,
      undefined,
      { polling: 10, timeout: 60_000 },
    );
    await tab.page.close();
    assert.equal(await c.proc.exit(), 0, c.proc.output);
    assert.ok(closedAt < steps, 'the tab was closed mid-run');
    const history = await finalHistory(dir);
    assert.equal(history.step, steps);
    assert.deepEqual(history.steps.map((s) => s.step), Array.from({ length: steps }, (_, i) => i + 1));
    for (const s of history.steps) assert.equal(s.examples, 16, `step ${s.step} reduced ${s.examples} examples`);
    assert.ok(history.events.some((e) => e.kind === 'leave' && e.message.startsWith(`worker ${id} `)), `the tab's leave is logged:\n${c.proc.output}`);
    assert.ok(
      history.events.some((e) => e.kind === 'reissue' && e.message.includes(`worker ${id} left`)),
      `the tab's shard was re-issued:\n${history.events.map((e) => `${e.kind}: ${e.message}`).join('\n')}`,
    );
  } finally {
    await chromium?.close();
    await node.kill();
    await c.proc.kill();
    await rm(dir, { recursive: true, force: true });
  }
});

test('?backend=wasm&threads=2: a tab trains a whole run on WASM with the Chorus training kernels, on two replica workers', { skip, timeout: 300_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-tab-wasm-'));
  const steps = 6;
  const c = await startCoordinator([...tinyRun(16, steps), '--checkpoint-dir', dir, '--checkpoint-every', '100']);
  let chromium: Chromium | undefined;
  try {
    chromium = await launchChromium();
    // A backend that is not one fails visibly, on the page.
    const wrong = await chromium.open(joinUrl(c, '&backend=tensorflow'));
    const failed = await wrong.state();
    assert.equal(failed.phase, 'failed');
    assert.match((await wrong.page.textContent('#error')) ?? '', /unknown backend 'tensorflow'/);
    await wrong.page.close();

    // Micro-batches of 8: each of the two replica workers computes one of every shard of 16.
    const tab = await chromium.open(joinUrl(c, '&backend=wasm&threads=2&micro-batch=8'));
    assert.equal(await c.proc.exit(), 0, c.proc.output);
    // The coordinator shutting down at the end of the run ends the tab's part, which is no error.
    const ended = await tab.waitFor('the run to end in the tab', (s) => s.phase === 'left' && s);
    assert.match(ended.endReason ?? '', /coordinator shut down/);
    assert.equal(ended.error, null);
    assert.equal(ended.backend?.tfBackend, 'wasm');
    assert.equal(ended.backend?.microBatch, 8);
    assert.equal(ended.backend?.replicas, 2);
    assert.match(ended.backend?.device ?? '', /WebAssembly.*, training on 2 replica workers/);
    assert.ok(ended.log.some((line) => /training on 2 replica workers/.test(line)), ended.log.join('\n'));
    assert.equal(await tab.page.textContent('#backend'), 'wasm');
    // The only worker: it computed every step's whole batch (and the final evaluation).
    assert.equal(ended.status?.stepsDone, steps);
    assert.equal(ended.status?.lastShard, 16);
    const history = await finalHistory(dir);
    assert.equal(history.step, steps);
    assert.ok(history.events.some((e) => e.kind === 'join' && /joined \(browser, wasm, CPU \(WebAssembly/.test(e.message)), history.events.map((e) => e.message).join('\n'));
  } finally {
    await chromium?.close();
    await c.proc.kill();
    await rm(dir, { recursive: true, force: true });
  }
});

for (const lowRank of [undefined, 2]) test(`int8${lowRank ? ' with low-rank gradients' : ''}: a tab on WASM trains next to a Node worker and holds the coordinator's public weights${lowRank ? ' and factors' : ''} bit for bit`, { skip, timeout: 300_000 }, async () => {
  // The codecs' SIMD kernels in Chromium against Node's: every delta the tab applies must give
  // the bits the coordinator's copy has. With low-rank gradients, also the factors it projects onto.
  const dir = await mkdtemp(join(tmpdir(), 'chorus-tab-int8-'));
  const c = await startCoordinator([...tinyRun(16, 100_000, ['--codec', 'int8', ...(lowRank ? ['--low-rank', String(lowRank)] : [])]), '--min-workers', '2', '--checkpoint-dir', dir, '--checkpoint-every', '100000']);
  const node = startWorker(c.url, c.token);
  let chromium: Chromium | undefined;
  const control = async (action: 'pause' | 'checkpoint') => {
    const r = await fetch(`http://127.0.0.1:${c.port}/api/control`, { method: 'POST', headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ action }) });
    assert.equal(r.status, 200, `${action}: ${await r.text()}`);
  };
  try {
    chromium = await launchChromium();
    const tab = await chromium.open(joinUrl(c, '&backend=wasm&threads=1'));
    const id = (await tab.waitFor('the tab to join', (s) => s.status?.workerId ?? null)) as string;
    await waitFor('the tab to have trained a few steps', async () => {
      const w = (await c.status()).workers.find((x) => x.id === id);
      return w && w.shardsDone >= 4;
    }, 120_000);
    await control('pause');
    // Paused: the step in flight finishes and its update goes out, then nothing moves.
    let last = -1;
    const step = await waitFor('the run to settle', async () => {
      const s = await c.status();
      const settled = s.paused && s.step === last;
      last = s.step;
      await new Promise((r) => setTimeout(r, 500));
      return settled && s.step;
    }, 60_000);
    await waitFor('the tab to hold the last update', async () => (await tab.state()).status?.version === step);
    await control('checkpoint');
    const name = `checkpoint-${String(step).padStart(9, '0')}.chorus`;
    const saved = await waitFor('the checkpoint', async () => (await readdir(dir)).includes(name) && decodeCheckpoint(new Uint8Array(await readFile(join(dir, name)))));
    assert.ok(saved.publicParams, 'an int8 checkpoint holds the public weights');
    const held = await tab.page.evaluate(() => (window as unknown as { chorus: { publicWeights(): Promise<number[] | null> } }).chorus.publicWeights());
    assert.ok(held, 'the tab holds public weights');
    const tabBytes = Buffer.from(Float32Array.from(held).buffer);
    assert.ok(tabBytes.equals(Buffer.from(saved.publicParams.buffer, saved.publicParams.byteOffset, saved.publicParams.byteLength)), `the tab's weights at step ${step} are the coordinator's public weights, bit for bit`);
    assert.ok(!Buffer.from(saved.params.buffer, saved.params.byteOffset, saved.params.byteLength).equals(tabBytes), 'and not the master weights');
    if (lowRank) {
      assert.ok(saved.lowRankFactors, 'a low-rank checkpoint holds the factors');
      const factors = await tab.page.evaluate(() => (window as unknown as { chorus: { lowRankFactors(): Promise<number[] | null> } }).chorus.lowRankFactors());
      assert.ok(factors, 'the tab holds low-rank factors');
      assert.ok(Buffer.from(Float32Array.from(factors).buffer).equals(Buffer.from(saved.lowRankFactors.buffer, saved.lowRankFactors.byteOffset, saved.lowRankFactors.byteLength)), `the tab's factors at step ${step} are the coordinator's, bit for bit`);
      const refused = (await c.status()).events.filter((e) => e.kind === 'refused').map((e) => e.message);
      assert.deepEqual(refused, [], 'no gradient of the tab or the Node worker was refused');
    }
  } finally {
    await chromium?.close();
    await node.kill();
    await c.proc.kill();
    await rm(dir, { recursive: true, force: true });
  }
});

test('the tab does not leak tensors: tf.memory().numTensors is the same after every shard', { skip, timeout: 300_000 }, async () => {
  const steps = 8;
  const c = await startCoordinator(tinyRun(8, steps));
  let chromium: Chromium | undefined;
  try {
    chromium = await launchChromium();
    const tab = await chromium.open(joinUrl(c, '&backend=webgpu'));
    const done = await tab.waitFor('every step in the tab', (s) => s.tensorsPerShard.length >= steps && s, 120_000);
    const counts = done.tensorsPerShard;
    assert.ok(counts.every((n) => n === counts[0]), `tensors after each shard: ${counts.join(', ')}`);
    // The replica's variables are all that stays: one tensor per parameter tensor, plus a few.
    assert.ok(counts[0] > 0 && counts[0] < 100, `${counts[0]} tensors`);
    assert.match((await tab.page.textContent('#tensors')) ?? '', new RegExp(`^${counts[0]} `));
    assert.equal(await c.proc.exit(), 0, c.proc.output);
  } finally {
    await chromium?.close();
    await c.proc.kill();
  }
});

test('without ?backend the tab times its candidates and never takes a software renderer over WASM; the coordinator gets the measurements', { skip, timeout: 180_000 }, async () => {
  const c = await startCoordinator(tinyRun(16, 100000));
  let chromium: Chromium | undefined;
  try {
    chromium = await launchChromium();
    const tab = await chromium.open(joinUrl(c));
    const joined = await tab.waitFor('the tab to join', (s) => (s.status?.workerId ? s : null), 150_000);
    const backend = joined.backend as unknown as { name: string; measurements: { name: string; imagesPerSecond: number | null; skipped?: string }[] };
    // Headless Chromium here has only SwiftShader: WebGPU's fallback adapter and WebGL on it.
    assert.equal(backend.name, 'wasm', JSON.stringify(backend.measurements));
    const byName = new Map(backend.measurements.map((m) => [m.name, m]));
    assert.equal(byName.get('wasm')!.skipped, undefined);
    assert.ok(byName.get('wasm')!.imagesPerSecond! > 0);
    assert.match(byName.get('webgpu')!.skipped!, /software \(fallback\) WebGPU adapter/);
    const webgl = byName.get('webgl')!;
    if (webgl.imagesPerSecond !== null) assert.match(webgl.skipped!, /software rendering, never preferred over wasm|slower than wasm/);
    assert.match((await tab.page.textContent('#measured')) ?? '', /wasm [\d.]+ images\/s \(chosen\)/);
    const row = await waitFor('the coordinator to list the tab', async () =>
      ((await c.status()).workers as unknown as { id: string; backends: unknown }[]).find((w) => w.id === joined.status!.workerId),
    );
    assert.deepEqual(row.backends, backend.measurements);
  } finally {
    await chromium?.close();
    await c.proc.kill();
  }
});
