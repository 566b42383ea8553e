/**
 * A browser tab's training images/s on WASM with 1 thread (the tab's own replica: tfjs' threaded
 * WASM build, XNNPACK on its own thread pool) and with N replica workers (?threads=N, each
 * single-threaded): headless Debian Chromium, resnet20v2, shards of real CIFAR-10 (augmented,
 * BatchNorm groups and micro-batches of 32), the compute time the tab reports (computeMs: the
 * shard's augmentation, forward/backward and the sums, not the test's transfer into the page).
 * Also checks that every thread count gives the same bits.
 *
 *   npm run build && cd test && npx tsx browser-threads.bench.ts [--steps 3] [--batch 128] [--threads 1,2]
 *
 * Not part of npm test or npm run bench (it needs Chromium): run it as above.
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { gatherExamples } from '@chorus/data';
import { loadCifar10 } from '@chorus/data/node';
import { PRESETS, buildGraph, initialParams, weightLayout } from '@chorus/model';
import { launchChromium, serveBundle } from './browser-support.js';
import { cifarDir } from './support.js';

const { values } = parseArgs({ options: { steps: { type: 'string', default: '3' }, batch: { type: 'string', default: '128' }, threads: { type: 'string', default: '1,2' } } });
const opts = { steps: Number(values.steps), batch: Number(values.batch), threads: values.threads.split(',').map(Number) };

type Reply = { count: number; lossSum: number; computeMs: number; gradient: number[] };

const loadBefore = loadavg()[0].toFixed(2);
const server = await serveBundle();
const chromium = await launchChromium();
try {
  const train = (await loadCifar10(cifarDir)).train;
  const spec = PRESETS.resnet20v2;
  const params = Array.from(initialParams(weightLayout(buildGraph(spec)), 1));
  const shards = Array.from({ length: opts.steps + 1 }, (_, s) => {
    const indices = Int32Array.from({ length: opts.batch }, (_, i) => (s * opts.batch + i * 37) % train.count);
    const { pixels, labels } = gatherExamples(train, indices);
    return { spec, bnGroup: 32, microBatch: 32, augmentSeed: 1000 + s, params, pixels: Array.from(pixels), labels: Array.from(labels), indices: Array.from(indices) };
  });
  let reference: Reply | null = null;
  for (const threads of opts.threads) {
    const tab = await chromium.open(`${server.url}/join?selftest&backend=wasm&threads=${threads}`);
    const ready = await tab.waitFor('the WASM backend', (s) => s.phase === 'selftest-ready' && s, 120_000);
    const times: number[] = [];
    for (const [i, shard] of shards.entries()) {
      const reply = await tab.page.evaluate(
        (request) => (window as unknown as { chorus: { computeGradient(r: unknown): Promise<Reply> } }).chorus.computeGradient(request),
        shard,
      );
      if (i === 0) {
        const same = reference === null ? null : reply.lossSum === reference.lossSum && reply.gradient.every((g, j) => Object.is(g, reference!.gradient[j]));
        reference ??= reply;
        if (same !== null) console.log(`  same bits as ${opts.threads[0]} thread(s): ${same}`);
      } else times.push(reply.computeMs);
    }
    times.sort((a, b) => a - b);
    const median = times[times.length >> 1];
    console.log(`${threads} thread(s) (${ready.backend!.device}): ${((opts.batch * 1000) / median).toFixed(1)} images/s (median of ${opts.steps} shards of ${opts.batch}, ${(median / 1000).toFixed(2)} s each)`);
    await tab.page.close();
  }
} finally {
  await chromium.close();
  await server.close();
}
// Another process on the cores slows the replica workers down; say how busy the machine was.
console.log(`load average (1 min): ${loadBefore} before, ${loadavg()[0].toFixed(2)} after`);
