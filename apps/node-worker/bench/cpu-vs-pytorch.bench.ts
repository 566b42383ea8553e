/**
 * Side by side on this CPU, in one run: Chorus' Node worker path on WASM (the worker's own
 * replica for 1 thread, ReplicaThreadPool for more; real CIFAR-10 shards, augmented, BatchNorm
 * groups and micro-batches as a run uses them) against PyTorch (Debian's python3-torch) training
 * the same resnet20v2 (bench/pytorch/resnet20v2_step.py), at batch 32 and 128, with 1 and 2
 * threads. Prints a table and the ratio Chorus / PyTorch at the same thread count; the headline
 * is batch 128 on every core. Writes bench/results/cpu-vs-pytorch.json at the repo root.
 *
 *   npm run build && cd apps/node-worker && npx tsx bench/cpu-vs-pytorch.bench.ts [--steps 5]
 *
 * CHORUS_PYTHON picks another Python (default /usr/bin/python3). Without torch it says how to install it and still reports Chorus' numbers. A benchmark, never
 * a test: it does not fail on a slow machine.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import * as tf from '@tensorflow/tfjs';
import { microBatchFor } from '@chorus/backend';
import { selectNodeBackend } from '@chorus/backend/node';
import { PRESETS, buildGraph, initialParams, weightLayout } from '@chorus/model';
import type { ShardResult } from '@chorus/protocol';
import { Replica } from '@chorus/train';
import { computeShard } from '@chorus/worker';
import { ReplicaThreadPool } from '../src/threads/pool.js';
import { benchShards, loadTrainSplit, sameBits, timeShards } from './shard-timing.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
// Debian's python3-torch lives under /usr/bin/python3, not in a python3 that PATH may find first.
const python = process.env.CHORUS_PYTHON ?? '/usr/bin/python3';
const script = resolve(root, 'bench/pytorch/resnet20v2_step.py');
const list = (value: string) => value.split(',').map(Number);

const opts = new Command()
  .option('--steps <n>', 'timed shards per Chorus setting, after a warm-up shard', Number, 5)
  // PyTorch's steps are short (a tenth of a second or so), and a busy second core slows its two
  // threads a lot, now and then: more steps keep the median clear of those.
  .option('--torch-steps <n>', 'timed steps per PyTorch setting, after 2 warm-up steps', Number, 15)
  .option('--threads <list>', 'thread counts (default: 1, 2 and every core)', list, [...new Set([1, 2, availableParallelism()])].sort((a, b) => a - b))
  .option('--batches <list>', 'batch sizes', list, [32, 128])
  .option('--no-pytorch', 'Chorus only')
  .option('--data <dir>', 'CIFAR-10 directory (default: CHORUS_CIFAR_DIR, else ../shared/datasets/cifar-10-batches-bin)')
  .parse()
  .opts<{ steps: number; torchSteps: number; threads: number[]; batches: number[]; pytorch: boolean; data?: string }>();

interface Row {
  framework: string;
  threads: number;
  batch: number;
  /** Chorus: the BatchNorm group and micro-batch (the run's --bn-group; the worker's --micro-batch). */
  bnGroup?: number;
  microBatch?: number;
  msPerStep: number;
  imagesPerSecond: number;
  /** Chorus with threads: the result has the bits of the 1-thread one. */
  sameBits?: boolean;
}

const load = () => loadavg().map((l) => Number(l.toFixed(2)));
const loadBefore = load();
const rows: Row[] = [];

// ---- Chorus: what a Node worker on WASM computes for one assigned shard.
tf.env().set('PROD', true);
await selectNodeBackend({ force: 'wasm', selfTest: false });
const train = await loadTrainSplit(opts.data);
const spec = PRESETS.resnet20v2;
const params = initialParams(weightLayout(buildGraph(spec)), 1);
const microBatch = microBatchFor('wasm', 'node');
const top = Math.max(...opts.threads);
// The default BatchNorm group is the micro-batch (32): a batch-32 shard is then one micro-batch
// and a second thread has nothing to do. Smaller groups, each its own micro-batch, give every
// thread one: a different run (--bn-group 16 --micro-batch 16 are other bits than groups of
// 32), so that setting is measured too, whenever a batch has fewer micro-batches than threads.
const settings = opts.batches.flatMap((batch) => {
  const own = { batch, bnGroup: microBatch, microBatch };
  const small = batch / top;
  return batch / microBatch < top && Number.isInteger(small) ? [own, { batch, bnGroup: small, microBatch: small }] : [own];
});
const pools = new Map<number, ReplicaThreadPool>();
try {
  for (const threads of opts.threads.filter((t) => t > 1)) pools.set(threads, await ReplicaThreadPool.start(threads, 'wasm'));
  for (const { batch, bnGroup, microBatch: used } of settings) {
    const shards = benchShards(train, batch, opts.steps + 1);
    let reference: ShardResult | null = null;
    for (const threads of opts.threads) {
      let timing;
      if (threads === 1) {
        // --threads 1: the worker's own replica on its main thread.
        const replica = new Replica(spec, { microBatch: used, bnGroup });
        replica.setParams(params);
        timing = await timeShards(shards, (shard) => computeShard(replica, shard));
        replica.dispose();
      } else {
        const pool = pools.get(threads)!;
        timing = await timeShards(shards, (shard) => pool.compute({ spec, bnGroup, microBatch: used, params, paramsVersion: 0 }, shard));
      }
      reference ??= timing.first;
      const row: Row = { framework: 'chorus (tfjs 4.22, wasm)', threads, batch, bnGroup, microBatch: used, msPerStep: timing.medianMs, imagesPerSecond: timing.imagesPerSecond };
      if (reference !== timing.first) row.sameBits = sameBits(timing.first, reference);
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  }
} finally {
  await Promise.all([...pools.values()].map((p) => p.close()));
}

// ---- PyTorch: the same model, one SGD step at a time.
const skipped: string[] = [];
const installHint = 'install it with: sudo apt-get install -y python3-torch (Debian), then rerun';
if (!opts.pytorch) skipped.push('PyTorch: --no-pytorch');
else if (!existsSync(python)) skipped.push(`PyTorch: no ${python}; ${installHint}`);
else {
  try {
    execFileSync(python, ['-c', 'import torch'], { stdio: 'pipe' });
    const out = execFileSync(python, [script, '--threads', ...opts.threads.map(String), '--batches', ...opts.batches.map(String), '--steps', String(opts.torchSteps)], {
      // glibc's defaults unmap and re-fault PyTorch's large activation buffers every step.
      env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '4294967296', MALLOC_TRIM_THRESHOLD_: '4294967296' },
      encoding: 'utf8',
      timeout: 600_000,
    });
    for (const line of out.trim().split('\n')) {
      const r = JSON.parse(line) as { framework: string; threads: number; batch: number; msPerStep: number; imagesPerSecond: number };
      const row: Row = { framework: r.framework, threads: r.threads, batch: r.batch, msPerStep: r.msPerStep, imagesPerSecond: r.imagesPerSecond };
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  } catch (error) {
    const message = (error as { stderr?: string }).stderr?.toString().trim().split('\n').at(-1) ?? (error as Error).message.split('\n')[0];
    skipped.push(`PyTorch: ${message}; ${/No module named .?torch/.test(message) ? installHint : 'see the message above'}`);
  }
}
const loadAfter = load();

// ---- The table: Chorus / PyTorch at the same batch and thread count.
const torchRow = (batch: number, threads: number) => rows.find((r) => r.framework.startsWith('pytorch') && r.batch === batch && r.threads === threads);
const ratio = (r: Row) => {
  const t = r.framework.startsWith('chorus') ? torchRow(r.batch, r.threads) : undefined;
  return t ? r.imagesPerSecond / t.imagesPerSecond : null;
};
const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`;
console.log(`\nmachine: ${machine}; load average (1, 5, 15 min) before ${loadBefore.join(' ')}, after ${loadAfter.join(' ')}\n`);
console.log('| framework | threads | batch | BN group / micro-batch | ms/step | images/s | Chorus / PyTorch | same bits as 1 thread |');
console.log('| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |');
for (const r of [...rows].sort((a, b) => a.batch - b.batch || a.threads - b.threads || a.framework.localeCompare(b.framework))) {
  const q = ratio(r);
  const group = r.bnGroup ? `${r.bnGroup} / ${r.microBatch}` : '-';
  const bits = r.sameBits === undefined ? '-' : r.sameBits ? 'yes' : '**no**';
  console.log(`| ${r.framework} | ${r.threads} | ${r.batch} | ${group} | ${r.msPerStep.toFixed(0)} | ${r.imagesPerSecond.toFixed(1)} | ${q === null ? '-' : `${q.toFixed(3)}x`} | ${bits} |`);
}
const chorusTop = rows.find((r) => r.framework.startsWith('chorus') && r.batch === 128 && r.threads === top && r.bnGroup === microBatch);
const headline = chorusTop ? ratio(chorusTop) : null;
if (headline !== null) {
  console.log(`\nheadline: resnet20v2, batch 128, ${top} threads: Chorus ${chorusTop!.imagesPerSecond.toFixed(1)} images/s = ${headline.toFixed(3)}x PyTorch's ${torchRow(128, top)!.imagesPerSecond.toFixed(1)} (target 0.25x, long run 0.5x)`);
}
for (const s of skipped) console.log(`skipped ${s}`);
// The 1-minute load counts this run's own threads too, so it is only a hint; but well above
// nothing before the run, or above the thread count after it, another process had the cores.
const busy = loadBefore[0] > 0.5 || loadAfter[0] > top + 0.5;
if (busy) console.log(`WARNING: the machine was busy (load ${loadBefore[0]} before, ${loadAfter[0]} after): PyTorch's threads slow down most when a core is taken; rerun when it is idle`);
if (rows.some((r) => r.sameBits === false)) console.log('WARNING: a thread count changed the bits of a shard (test/threads.test.ts should catch this)');
await mkdir(resolve(root, 'bench/results'), { recursive: true });
await writeFile(
  resolve(root, 'bench/results/cpu-vs-pytorch.json'),
  JSON.stringify({ machine, date: new Date().toISOString(), model: 'resnet20v2', loadavg: { before: loadBefore, after: loadAfter, busy }, headline: { batch: 128, threads: top, ratio: headline }, rows, skipped }, null, 2) + '\n',
);
