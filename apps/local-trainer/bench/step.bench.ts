/**
 * Training-step benchmark: ms/step and images/s of one synchronous SGD step (gradients of the
 * global batch through the replica, then the optimizer on the flat weights) for resnet20v2 at
 * batch 32 and 128 on every Node backend that loads, and the PyTorch comparison on the small
 * bottleneck ResNet V2 (preset resnetSmall). Writes bench/results/step.json at the repo root.
 *
 *   npm run bench                      (all benchmarks, through turbo)
 *   CHORUS_BENCH_CPU=1 npx tsx bench/step.bench.ts   (also the plain-JS CPU backend: very slow)
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { NODE_BACKENDS, selectNodeBackend } from '@chorus/backend/node';
import { PRESETS, initialParams, type ResNetV2Spec } from '@chorus/model';
import { Replica, createOptimizer } from '@chorus/train';
import { defaultMicroBatch } from '@chorus/backend';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
tf.env().set('PROD', true);

interface Row {
  framework: string;
  backend: string;
  model: string;
  batch: number;
  microBatch?: number;
  msPerStep: number;
  imagesPerSecond: number;
  steps: number;
}

async function measure(model: string, spec: ResNetV2Spec, backend: string, batch: number, steps: number): Promise<Row> {
  const microBatch = defaultMicroBatch(tf.getBackend());
  const replica = new Replica(spec, { microBatch, bnGroup: 32 });
  const params = initialParams(replica.layout, 1);
  const optimizer = createOptimizer('sgd', replica.layout, { weightDecay: 5e-4 });
  const images = new Float32Array(batch * 32 * 32 * 3).map((_, i) => Math.sin(i));
  const labels = new Uint8Array(batch).map((_, i) => i % 10);
  const mean = new Float32Array(replica.layout.paramCount);
  const times: number[] = [];
  for (let i = 0; i < steps + 1; i++) {
    const t0 = performance.now();
    replica.setParams(params);
    const g = await replica.computeGradients(images, labels);
    for (let j = 0; j < mean.length; j++) mean[j] = g.gradient[j] / g.count;
    optimizer.apply(params, mean, 0.01);
    if (i > 0) times.push(performance.now() - t0); // the first step warms up kernels and caches
  }
  replica.dispose();
  times.sort((a, b) => a - b);
  const ms = times[Math.floor(times.length / 2)];
  return { framework: 'chorus (tfjs 4.22)', backend, model, batch, microBatch, msPerStep: ms, imagesPerSecond: (batch * 1000) / ms, steps };
}

function pytorch(): Row[] {
  const python = '/usr/bin/python3';
  if (!existsSync(python)) return [];
  try {
    const out = execFileSync(python, [resolve(root, 'bench/pytorch/resnet_small_step.py'), '--threads', '2'], {
      env: { ...process.env, MALLOC_MMAP_THRESHOLD_: '4294967296', MALLOC_TRIM_THRESHOLD_: '4294967296' },
      encoding: 'utf8',
      timeout: 600_000,
    });
    return out
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
      .map((r) => ({ framework: r.framework, backend: `cpu, ${r.threads} threads`, model: 'resnetSmall', batch: r.batch, msPerStep: r.msPerStep, imagesPerSecond: r.imagesPerSecond, steps: 10 }));
  } catch (error) {
    console.log(`PyTorch comparison skipped: ${(error as Error).message.split('\n')[0]} (apt-get install python3-torch)`);
    return [];
  }
}

const rows: Row[] = [];
const skipped: string[] = [];
for (const name of NODE_BACKENDS) {
  if (name === 'cpu' && !process.env.CHORUS_BENCH_CPU) {
    skipped.push('cpu: plain-JS backend not measured by default (about 0.14 images/s for resnetSmall); set CHORUS_BENCH_CPU=1');
    continue;
  }
  try {
    await selectNodeBackend({ force: name });
  } catch (error) {
    skipped.push(`${name}: ${(error as Error).message}`);
    continue;
  }
  const batches = name === 'cpu' ? [32] : [32, 128];
  for (const batch of batches) {
    rows.push(await measure('resnet20v2', PRESETS.resnet20v2, name, batch, name === 'cpu' ? 1 : 3));
    console.log(JSON.stringify(rows.at(-1)));
  }
  if (name === 'wasm') {
    for (const batch of [32, 128]) {
      rows.push(await measure('resnetSmall', PRESETS.resnetSmall, name, batch, 3));
      console.log(JSON.stringify(rows.at(-1)));
    }
  }
}
rows.push(...pytorch());

const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`;
console.log(`\nmachine: ${machine}\n`);
console.log('| framework | backend | model | batch | micro-batch | ms/step | images/s |');
console.log('| --- | --- | --- | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  console.log(`| ${r.framework} | ${r.backend} | ${r.model} | ${r.batch} | ${r.microBatch ?? '-'} | ${r.msPerStep.toFixed(0)} | ${r.imagesPerSecond.toFixed(1)} |`);
}
for (const s of skipped) console.log(`skipped ${s}`);
await mkdir(resolve(root, 'bench/results'), { recursive: true });
await writeFile(resolve(root, 'bench/results/step.json'), JSON.stringify({ machine, date: new Date().toISOString(), rows, skipped }, null, 2) + '\n');
