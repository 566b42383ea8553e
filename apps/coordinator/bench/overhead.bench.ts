/**
 * Framework cost per step: a real coordinator and N workers over real WebSockets on
 * 127.0.0.1, where each worker's "compute" is a fixed delay. Whatever a step takes beyond that
 * delay is Chorus: encode, transfer, decode and validate, reduce, optimizer, broadcast.
 * Also the bytes on the wire per step and worker against the floor of 2 x parameters x 4 bytes
 * (one fp32 gradient up, one fp32 weight vector down), and a breakdown of the pieces measured
 * one by one. Fake workers live in this process, so their own encode/decode is counted too:
 * an upper bound for the coordinator's share.
 *
 *   npx tsx bench/overhead.bench.ts        (from apps/coordinator; writes bench/results/overhead.json)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { loadCifar10 } from '@chorus/data/node';
import { PRESETS, buildGraph, weightLayout } from '@chorus/model';
import { PROTOCOL_VERSION, encodeMessage, parseMessage, type Message } from '@chorus/protocol';
import { createOptimizer } from '@chorus/train';
import { ChorusServer, Coordinator, DEFAULT_RUN_OPTIONS, StepReducer, createLogger, createMetrics, type RunConfig } from '../src/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const data = await loadCifar10(process.env.CHORUS_CIFAR_DIR ?? resolve(root, '../shared/datasets/cifar-10-batches-bin'));
const spec = PRESETS.resnet20v2;
const layout = weightLayout(buildGraph(spec));
const P = layout.paramCount;
const DELAY_MS = 200;
const STEPS = 12;
const BATCH = 128;

function fakeWorker(url: string, token: string): Promise<WebSocket> {
  const gradient = new Float32Array(P).fill(1e-4);
  const bnMoments = new Float32Array(layout.bnStatCount).fill(0.5);
  const socket = new WebSocket(url);
  socket.on('close', (code, reason) => { if (code !== 1000 && code !== 4006) console.error(`fake worker closed: ${code} ${reason}`); });
  socket.on('message', (raw: Buffer) => {
    const m = parseMessage(new Uint8Array(raw), { paramCount: P, bnStatCount: layout.bnStatCount, maxShardExamples: 1 << 20 });
    if (m.type === 'assign') {
      setTimeout(() => {
        const reply: Message = {
          type: 'gradient', v: PROTOCOL_VERSION, step: m.step, shardId: m.shardId, count: m.labels.length,
          lossSum: 2.3 * m.labels.length, correct: 0, computeMs: DELAY_MS, gradient, bnMoments,
        };
        socket.send(encodeMessage(reply));
      }, DELAY_MS);
    } else if (m.type === 'evaluate') {
      socket.send(encodeMessage({ type: 'evalResult', v: PROTOCOL_VERSION, evalId: m.evalId, shardId: m.shardId, count: m.labels.length, lossSum: 1, correct: 0 }));
    }
  });
  return new Promise((resolve) =>
    socket.on('open', () => {
      socket.send(encodeMessage({ type: 'hello', v: PROTOCOL_VERSION, token, runtime: { kind: 'node', backend: 'fake', device: `${DELAY_MS} ms delay`, cores: 1, microBatch: 4096, agent: 'bench' } }));
      resolve(socket);
    }),
  );
}

async function run(n: number) {
  const config: RunConfig = {
    preset: 'resnet20v2', spec, batch: BATCH, steps: STEPS, lr: 0.1, optimizer: 'sgd', weightDecay: 5e-4,
    warmupSteps: 1, schedule: 'cosine', bnGroup: 8, seed: 1, augment: true,
  };
  const metrics = createMetrics();
  const coordinator = new Coordinator({
    config,
    options: { ...DEFAULT_RUN_OPTIONS, minWorkers: n, evalExamples: 1, checkpointEvery: 0 },
    data,
    token: 't',
    log: createLogger({ quiet: true }),
    metrics,
  });
  const server = new ChorusServer({ host: '127.0.0.1', port: 0, coordinator, metrics, log: createLogger({ quiet: true }) });
  const { port } = await server.listen();
  const sockets = await Promise.all(Array.from({ length: n }, () => fakeWorker(`ws://127.0.0.1:${port}/ws`, 't')));
  await coordinator.run();
  const steps = coordinator.history.steps.slice(2); // the first steps measure speeds
  const meanMs = (steps.reduce((a, s) => a + s.seconds, 0) / steps.length) * 1000;
  const text = await metrics.metrics();
  const counter = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  const bytes = counter('chorus_bytes_received_total') + counter('chorus_bytes_sent_total');
  for (const s of sockets) s.close();
  await server.close();
  return { workers: n, stepMs: meanMs, overheadMs: meanMs - DELAY_MS, bytesPerStepPerWorker: bytes / STEPS / n, floor: 2 * P * 4 };
}

function time(fn: () => void, reps = 30): number {
  fn();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  return (performance.now() - t0) / reps;
}

// Pieces, one by one, at resnet20v2 size.
const g = new Float32Array(P).fill(1e-3);
const moments = new Float32Array(layout.bnStatCount).fill(0.5);
const gradMsg: Message = { type: 'gradient', v: PROTOCOL_VERSION, step: 0, shardId: 1, count: 16, lossSum: 1, correct: 0, computeMs: 1, gradient: g, bnMoments: moments };
const gradFrame = encodeMessage(gradMsg);
const params = new Float32Array(P).fill(0.01);
const updateMsg: Message = { type: 'update', v: PROTOCOL_VERSION, version: 1, params, bnStats: moments };
const optimizer = createOptimizer('sgd', layout, { weightDecay: 5e-4 });
const pieces = {
  'encode gradient (worker)': time(() => encodeMessage(gradMsg)),
  'decode + validate gradient (coordinator)': time(() => parseMessage(gradFrame, { paramCount: P, bnStatCount: layout.bnStatCount, maxShardExamples: 1024 })),
  'reduce one shard': time(() => {
    const r = new StepReducer(layout, 16);
    r.expect(0, 16);
    r.accept(0, 16, { count: 16, lossSum: 1, correct: 0, gradient: g, bnMoments: moments });
  }),
  'optimizer (SGD Nesterov, weight decay)': time(() => optimizer.apply(params, g, 1e-9)),
  'encode update (once per step)': time(() => encodeMessage(updateMsg)),
};

const rows = [];
for (const n of (process.env.CHORUS_BENCH_WORKERS ?? "1,2,4,8").split(",").map(Number)) {
  rows.push(await run(n));
  console.log(JSON.stringify(rows.at(-1)));
}
const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`;
console.log(`\nmachine: ${machine}; resnet20v2 (${P.toLocaleString('en-US')} parameters), batch ${BATCH}, compute = ${DELAY_MS} ms delay\n`);
console.log('| workers | step (ms) | framework overhead (ms) | bytes/step/worker | floor 2·P·4 | ratio |');
console.log('| ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  console.log(`| ${r.workers} | ${r.stepMs.toFixed(1)} | ${r.overheadMs.toFixed(1)} | ${(r.bytesPerStepPerWorker / 1e6).toFixed(2)} MB | ${(r.floor / 1e6).toFixed(2)} MB | ${(r.bytesPerStepPerWorker / r.floor).toFixed(2)} |`);
}
console.log('\n| piece | ms |\n| --- | ---: |');
for (const [k, v] of Object.entries(pieces)) console.log(`| ${k} | ${v.toFixed(2)} |`);
await mkdir(resolve(root, 'bench/results'), { recursive: true });
await writeFile(resolve(root, 'bench/results/overhead.json'), JSON.stringify({ machine, date: new Date().toISOString(), delayMs: DELAY_MS, rows, pieces }, null, 2) + '\n');
