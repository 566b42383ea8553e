/**
 * Framework cost per step: a real coordinator process (the compiled CLI, as users start it) and
 * N workers over real WebSockets on 127.0.0.1, where each worker's "compute" is a fixed delay.
 * Whatever a step takes beyond that delay is Chorus: transfer, decode and validate, reduce,
 * optimizer, broadcast, for each codec. Also the bytes on the wire per step and worker against
 * each codec's floor (its gradient and update, and the shard's images), and the pieces measured
 * one by one, the worker's own among them. The fake workers (lean-workers.ts, on a worker thread
 * of this process) skip their own work, which real workers do each on their own machine, and
 * read only their messages' headers: so that pieces eight machines would do side by side do not
 * run in turn on the cores the coordinator needs. A real worker's own pieces (its ws reading the
 * update, masking its gradient, decoding, applying, encoding) are measured here and added beside.
 *
 *   npm run build && npx tsx bench/overhead.bench.ts   (from apps/coordinator; writes bench/results/overhead.json)
 *   CHORUS_BENCH_WORKERS=8 CHORUS_BENCH_CODEC=int8 CHORUS_BENCH_STEPS=40 ...   (one configuration)
 *   CHORUS_BENCH_IN_PROCESS=1 ...   (fake workers on this process's main thread)
 *   CHORUS_BENCH_REPEAT=3 ...   (each configuration three times: the median run, and the range)
 *   CHORUS_BENCH_BARE=1 ...   (also the same fleet against a bare WebSocket server, ws-floor.ts)
 *   CHORUS_BENCH_HEAP_FLAG=0 ...   (the coordinator without npm start's --initial-old-space-size=64)
 *   CHORUS_BENCH_FLEET_THREADS=4 ...   (the fake workers spread over that many worker threads)
 *   CHORUS_BENCH_FLEET=ws ...   (fake workers on ws's client, fake-workers.ts, as before the sixth session)
 *   CHORUS_BENCH_COORDINATOR_CPUS=0 taskset -c 1 npx tsx ...   (the coordinator on a core of its own)
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { execFileSync, spawn } from 'node:child_process';
import { PRESETS, buildGraph, weightLayout } from '@chorus/model';
import { type Status, type StepRecord, ErrorFeedback, PROTOCOL_VERSION, PublicWeights, applyDelta, encodeMessage, getGradientCodec, isCodecName, parseMessage, type CodecName, type Message } from '@chorus/protocol';
import { MasterState } from '@chorus/train';
import { UncountedShards } from '@chorus/worker';
import * as ws from 'ws';
import { fakeWorker } from './fake-workers.js';
import { leanWorker } from './lean-workers.js';
import { ReductionBuffers, StepReducer } from '../src/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const cifarDir = process.env.CHORUS_CIFAR_DIR ?? resolve(root, '../shared/datasets/cifar-10-batches-bin');
const TOKEN = 'overhead-bench';
const spec = PRESETS.resnet20v2;
const layout = weightLayout(buildGraph(spec));
const P = layout.paramCount;
const DELAY_MS = 200;
const STEPS = Number(process.env.CHORUS_BENCH_STEPS ?? 32);
const BATCH = 128;
// CHORUS_BENCH_IN_PROCESS=1: the fake workers run on this process's main thread; by default
// on a worker thread.
const IN_PROCESS = process.env.CHORUS_BENCH_IN_PROCESS === '1';
// CHORUS_BENCH_FLEET=ws: the fake workers on ws's client (fake-workers.ts) rather than the lean
// clients written on the socket (lean-workers.ts, the default), to compare.
const FLEET = process.env.CHORUS_BENCH_FLEET ?? 'lean';
if (FLEET !== 'lean' && FLEET !== 'ws') throw new Error(`CHORUS_BENCH_FLEET: lean or ws, not ${FLEET}`);
const FLEET_THREADS = Number(process.env.CHORUS_BENCH_FLEET_THREADS ?? 1);
if (!Number.isInteger(FLEET_THREADS) || FLEET_THREADS < 1) throw new Error(`CHORUS_BENCH_FLEET_THREADS: a whole number of threads, at least 1, not ${process.env.CHORUS_BENCH_FLEET_THREADS}`);

const CODECS = (process.env.CHORUS_BENCH_CODEC ?? 'fp32,int8').split(',').map((c) => {
  if (!isCodecName(c)) throw new Error(`CHORUS_BENCH_CODEC: unknown codec ${c}`);
  return c;
});

/**
 * The V8 flag `npm start` gives the coordinator (package.json; docs/operations.md, "Sizing");
 * CHORUS_BENCH_HEAP_FLAG=0 starts it without, to compare.
 */
const COORDINATOR_NODE_FLAGS = process.env.CHORUS_BENCH_HEAP_FLAG === '0' ? [] : ['--initial-old-space-size=64'];

/**
 * The least a worker's step can move in a codec: the gradient up and the update down as that
 * codec packs them, plus the shard's images and labels (3,073 bytes an example).
 */
function codecFloor(codec: CodecName, workers: number): number {
  return 2 * getGradientCodec(codec).wireBytes(P) + (BATCH / workers) * 3073;
}

/** CPU time (user + system, ms) a process has used so far, from /proc (Linux). */
async function cpuMsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/**
 * How to start the server under test: node itself, or node through taskset where
 * CHORUS_BENCH_COORDINATOR_CPUS names the CPUs it gets (the bare server gets the same, so the
 * floor stays comparable).
 */
function pinned(): [string, string[]] {
  const cpus = process.env.CHORUS_BENCH_COORDINATOR_CPUS;
  return cpus ? ['taskset', ['-c', cpus, process.execPath]] : [process.execPath, []];
}

/** A coordinator process as users start it (compiled, no TypeScript loader in its heap, npm start's V8 flag). */
async function startCoordinator(n: number, codec: CodecName): Promise<{ base: string; port: number; pid: number; stop: () => Promise<void> }> {
  // CHORUS_BENCH_PROFILE=DIR: a CPU profile of the coordinator process, written to DIR.
  const profile = process.env.CHORUS_BENCH_PROFILE ? ['--cpu-prof', '--cpu-prof-dir', process.env.CHORUS_BENCH_PROFILE] : [];
  // CHORUS_BENCH_NODE_FLAGS: more flags for the coordinator's node (e.g. --trace-gc); its output
  // then goes to CHORUS_BENCH_LOG (default /tmp/chorus-overhead-coordinator.log).
  const flags = process.env.CHORUS_BENCH_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
  // CHORUS_BENCH_COORDINATOR_CPUS=0: the coordinator pinned to those CPUs (taskset), as if on a
  // machine of its own; run the bench itself with `taskset -c 1` to keep the fake fleet off them.
  const [command, prefix] = pinned();
  const child = spawn(command, [
    ...prefix, ...profile, ...COORDINATOR_NODE_FLAGS, ...flags, resolve(root, 'apps/coordinator/dist/cli.js'), '--host', '127.0.0.1', '--port', '0', '--data', cifarDir, '--preset', 'resnet20v2',
    '--batch', String(BATCH), '--steps', '1000000', '--bn-group', '8', '--warmup', '1', '--eval-every', '0', '--eval-examples', '1',
    '--token', TOKEN, '--min-workers', String(n), '--codec', codec,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
  const stop = async () => {
    if (flags.length) await writeFile(process.env.CHORUS_BENCH_LOG ?? '/tmp/chorus-overhead-coordinator.log', output);
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const port = await until('the coordinator banner', 60_000, () => {
      if (child.exitCode !== null) throw new Error(`coordinator exited:\n${output}`);
      const m = /dashboard:\s+http:\/\/127\.0\.0\.1:(\d+)\//.exec(output);
      return m ? Number(m[1]) : null;
    });
    return { base: `http://127.0.0.1:${port}`, port, pid: child.pid!, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function until<T>(what: string, ms: number, probe: () => T | null | false | Promise<T | null | false>, everyMs = 250): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== null && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    // Not too often: every status request is work on the coordinator being measured.
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** N fake workers connected to `url` (lean-workers.ts, or fake-workers.ts with `fleet` ws), on worker threads or this thread; returns their stop. */
async function startFleet(n: number, url: string, codec: CodecName, fleet = FLEET): Promise<() => Promise<void>> {
  const options = { url, token: TOKEN, codec, paramCount: P, bnStatCount: layout.bnStatCount, delayMs: DELAY_MS };
  if (IN_PROCESS) {
    const workers = await Promise.all(Array.from({ length: n }, () => (fleet === 'ws' ? fakeWorker(options) : leanWorker(options))));
    return async () => { for (const w of workers) w.close(); };
  }
  // tsx's loader does not follow into worker threads on Node 20: the thread registers it.
  const entry = `import('tsx/esm/api').then(({ tsImport }) => tsImport(${JSON.stringify(new URL(fleet === 'ws' ? './fake-workers.ts' : './lean-workers.ts', import.meta.url).href)}, ${JSON.stringify(import.meta.url)}))`;
  const threadCount = Math.min(n, FLEET_THREADS);
  const threads = Array.from({ length: threadCount }, (_, t) => new Worker(entry, { eval: true, workerData: { ...options, n: Math.floor(n / threadCount) + (t < n % threadCount ? 1 : 0) } }));
  const stop = async () => { await Promise.all(threads.map(async (thread) => { thread.postMessage('stop'); await thread.terminate(); })); };
  try {
    await Promise.all(threads.map((thread) => new Promise<void>((resolve, reject) => { thread.once('message', () => resolve()); thread.once('error', reject); })));
  } catch (error) {
    await stop();
    throw error;
  }
  return stop;
}

/**
 * The same fleet against ws-floor.ts, a bare server that moves a step's bytes and does nothing
 * else (CHORUS_BENCH_BARE=1): the median step there is what Node, ws, loopback and the emulated
 * fleet cost on this machine before Chorus does anything.
 */
async function runBare(n: number, codec: CodecName): Promise<{ codec: CodecName; workers: number; stepMs: number; overheadMs: number }> {
  const [command, prefix] = pinned();
  const child = spawn(command, [...prefix, '--import', 'tsx', new URL('./ws-floor.ts', import.meta.url).pathname, String(n), codec, String(P), String(layout.bnStatCount), String(STEPS)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
  let stopWorkers = async () => {};
  try {
    const port = await until('the floor server', 60_000, () => {
      if (child.exitCode !== null) throw new Error(`floor server exited:\n${output}`);
      const m = /^port (\d+)$/m.exec(output);
      return m ? Number(m[1]) : null;
    });
    stopWorkers = await startFleet(n, `ws://127.0.0.1:${port}/`, codec);
    const durations = await until(`${STEPS} floor steps`, 600_000, () => {
      if (child.exitCode !== null && !/^\[/m.test(output)) throw new Error(`floor server exited:\n${output}`);
      const m = /^(\[.*\])$/m.exec(output);
      return m ? (JSON.parse(m[1]!) as number[]) : null;
    });
    const sorted = durations.slice(2).sort((a, b) => a - b); // the first steps warm up
    const stepMs = sorted[Math.floor(sorted.length / 2)]!;
    return { codec, workers: n, stepMs, overheadMs: stepMs - DELAY_MS };
  } finally {
    await stopWorkers();
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

async function run(n: number, codec: CodecName, fleet = FLEET) {
  const coordinator = await startCoordinator(n, codec);
  let stopWorkers = async () => {};
  try {
    stopWorkers = await startFleet(n, `ws://127.0.0.1:${coordinator.port}/ws`, codec, fleet);
    const status = () => fetch(`${coordinator.base}/api/status`).then((r) => r.json() as Promise<Status>);
    // One sample of the coordinator's counters, read together with the step they belong to: its
    // CPU time (its own cost, whatever it waits on), the bytes it moved (from a point after the
    // welcome's full weights, a one-time cost) and the time its main thread was busy (the serial
    // work no number of worker machines can spread). Read from /metrics: /api/status carries the
    // last 200 steps and hashes the weights, work a coordinator does for a dashboard once a
    // second (its live feed), not four times a second as a poll here would make it.
    const sample = async () => {
      const text = await (await fetch(`${coordinator.base}/metrics`)).text();
      const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
      return { step: value('chorus_step'), cpuMs: await cpuMsOf(coordinator.pid), bytes: value('chorus_bytes_received_total') + value('chorus_bytes_sent_total'), busySeconds: value('chorus_event_loop_busy_seconds_total') };
    };
    const from = await until('the warm-up steps', 600_000, async () => { const s = await sample(); return s.step >= 2 && s; });
    // Once a second, as often as a dashboard gets its status; it runs on past the last sample.
    const to = await until(`${STEPS} steps`, 600_000, async () => { const s = await sample(); return s.step >= STEPS && s; }, 1000);
    const measured = to.step - from.step;
    const cpuMsPerStep = (to.cpuMs - from.cpuMs) / measured;
    const busyMsPerStep = (1000 * (to.busySeconds - from.busySeconds)) / measured;
    const bytes = to.bytes - from.bytes;
    const done = await status();
    const steps = done.recentSteps.filter((r) => r.step > 2); // the first steps measure speeds
    // The median step: a shared 2-core machine has the odd step that waited for another process.
    const sorted = steps.map((s) => s.seconds * 1000).sort((a, b) => a - b);
    const medianMs = sorted[Math.floor(sorted.length / 2)]!;
    // The coordinator's own share, from its step breakdown: adding gradients as they arrive plus
    // the totals, the optimizer, encoding and sending the update; and the last shard's transfer.
    const bd = (f: (b: NonNullable<StepRecord['breakdown']>) => number) => steps.reduce((a, s) => a + (s.breakdown ? f(s.breakdown) : NaN), 0) / steps.length;
    const breakdown = { reduceMs: bd((b) => b.reduceMs), optimizerMs: bd((b) => b.optimizerMs), broadcastMs: bd((b) => b.broadcastMs), transferMs: bd((b) => b.transferMs), waitMs: bd((b) => b.waitMs) };
    return { codec, workers: n, cpuMsPerStep, busyMsPerStep, stepMs: medianMs, overheadMs: medianMs - DELAY_MS, bytesPerStepPerWorker: bytes / measured / n, floor: codecFloor(codec, n), breakdown };
  } finally {
    await stopWorkers();
    await coordinator.stop();
  }
}

/** ws's frame builder and parser (not in its type declarations), for the client's pieces below. */
type FrameOptions = { fin: boolean; rsv1: boolean; opcode: number; mask: boolean; readOnly: boolean };
const { Sender, Receiver } = ws as unknown as {
  Sender: { frame(data: Buffer, options: FrameOptions): Buffer[] };
  Receiver: new (options: { isServer: boolean; binaryType: string; maxPayload: number }) => { write(chunk: Buffer): boolean; on(event: 'message', listener: (data: Buffer) => void): void };
};

/**
 * What ws does for a real Node worker with one message from the coordinator: Node reads the
 * socket into fresh 64 KB buffers (each allocated, filled: the kernel's copy) and ws parses the
 * frame and joins the pieces into one message buffer. The lean fake workers skip this, so it
 * is one of the worker's own pieces.
 */
function wsReadMessage(message: Uint8Array): () => void {
  const wire = Buffer.concat(Sender.frame(Buffer.from(message.buffer, message.byteOffset, message.byteLength), { fin: true, rsv1: false, opcode: 2, mask: false, readOnly: true }));
  return () => {
    const receiver = new Receiver({ isServer: false, binaryType: 'nodebuffer', maxPayload: 0 });
    let received = 0;
    receiver.on('message', (data) => { received = data.length; });
    for (let at = 0; at < wire.length; at += 65536) {
      const read = Buffer.allocUnsafeSlow(Math.min(65536, wire.length - at));
      wire.copy(read, 0, at, at + read.length);
      receiver.write(read);
    }
    if (received !== message.byteLength) throw new Error(`ws parsed ${received} of ${message.byteLength} bytes`);
  };
}

function time(fn: () => void, reps = 30): number {
  fn();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  return (performance.now() - t0) / reps;
}

// Pieces, one by one, at resnet20v2 size, per codec: the worker's own (which the fake workers
// skip, see fake-workers.ts) and the coordinator's.
const g = new Float32Array(P);
for (let i = 0; i < P; i++) g[i] = 1e-3 * Math.sin(i * 0.37) + 1e-5;
const moments = new Float32Array(layout.bnStatCount).fill(0.5);
const limits = { paramCount: P, bnStatCount: layout.bnStatCount, maxShardExamples: 1024 };
function piecesOf(codecName: CodecName) {
  const codec = getGradientCodec(codecName);
  const feedback = new ErrorFeedback(codec, P);
  const ledger = new UncountedShards();
  const counted = Int32Array.from({ length: 8 }, (_, i) => i + 1);
  const encoded = feedback.encode(g);
  const gradMsg: Message = { type: 'gradient', v: PROTOCOL_VERSION, step: 0, shardId: 1, count: 16, lossSum: 1, correct: 0, computeMs: 1, gradient: encoded.values, bnMoments: moments, ...(encoded.scales ? { scales: encoded.scales } : {}) };
  const gradFrame = encodeMessage(gradMsg);
  const master = new Float32Array(P).fill(0.01);
  const publicWeights = codecName === 'fp32' ? null : new PublicWeights(codec, new Float32Array(P));
  const updateOf = (): Message => {
    if (!publicWeights) return { type: 'update', v: PROTOCOL_VERSION, version: 1, params: master, bnStats: moments, counted };
    const { values, scales } = publicWeights.advance(master);
    return { type: 'update', v: PROTOCOL_VERSION, version: 1, delta: values, bnStats: moments, counted, ...(scales ? { scales } : {}) };
  };
  const updateFrame = encodeMessage(updateOf());
  const workerPublic = new Float32Array(P);
  // Kept from step to step, as in a run (its sum resident in the codec kernels' arena).
  const reduction = new ReductionBuffers(P);
  // The coordinator's optimizer as a run has it: in MasterState, beside the weights in the SGD
  // kernel's arena, stepping the mean gradient the reduction wrote into gradientBuffer.
  const masterState = new MasterState({ spec, batch: BATCH, steps: 1_000_000, lr: 0.1, optimizer: 'sgd', weightDecay: 5e-4, warmupSteps: 1, schedule: 'cosine', bnGroup: 8, seed: 1, augment: false }, layout, 50_000);
  masterState.gradientBuffer.set(g);
  return {
    'worker: decode + validate update, apply it': time(() => {
      const m = parseMessage(updateFrame, { ...limits, codec: codecName });
      if (m.type === 'update' && m.delta) applyDelta(codec, { values: m.delta, scales: m.scales }, workerPublic);
    }),
    'worker: ws reads the update (64 KB reads, joined)': time(wsReadMessage(updateFrame), 200),
    // ws.send copies a frame it did not make in order to mask it (readOnly), as the Node worker sends.
    'worker: ws masks the gradient frame': time(() => Sender.frame(Buffer.from(gradFrame.buffer, gradFrame.byteOffset, gradFrame.byteLength), { fin: true, rsv1: false, opcode: 2, mask: true, readOnly: true }), 200),
    // With the ledger a worker keeps until the next update says whether the shard counted.
    'worker: error feedback + encode gradient': time(() => {
      const e = ledger.encode(feedback, 1, 0, () => feedback.encode(g));
      encodeMessage({ ...gradMsg, gradient: e.values, ...(e.scales ? { scales: e.scales } : {}) });
      ledger.settle(1, counted, feedback);
    }),
    'coordinator: decode + validate gradient': time(() => parseMessage(gradFrame, { ...limits, codec: codecName })),
    'coordinator: reduce one shard': time(() => {
      const r = new StepReducer(layout, 16, codec, reduction);
      r.expect(0, 16);
      r.accept(0, 16, { count: 16, lossSum: 1, correct: 0, gradient: encoded, bnMoments: moments });
    }),
    'coordinator: optimizer (SGD Nesterov, weight decay)': time(() => masterState.apply(masterState.gradientBuffer, moments)),
    'coordinator: encode update (once per step)': time(() => encodeMessage(updateOf())),
  };
}
const pieces = Object.fromEntries(CODECS.map((c) => [c, piecesOf(c)]));

// CHORUS_BENCH_REPEAT=3: each configuration that many times, reporting the run with the median
// step and the range of all of them: on this shared 2-core machine one run moves by a few ms.
const REPEAT = Number(process.env.CHORUS_BENCH_REPEAT ?? 1);
type Row = Awaited<ReturnType<typeof run>> & { stepMsRange: number[]; date: string; repeat: number; steps: number; fakeWorkers: string };
const BARE = process.env.CHORUS_BENCH_BARE === '1';
type BareRow = Awaited<ReturnType<typeof runBare>> & { stepMsRange: number[]; date: string; repeat: number; steps: number };
const rows: Row[] = [];
const bareRows: BareRow[] = [];
for (const codec of CODECS) {
  for (const n of (process.env.CHORUS_BENCH_WORKERS ?? '1,2,4,8').split(',').filter(Boolean).map(Number)) {
    const runs = [];
    const bareRuns = [];
    // Interleaved, so the two see the same machine: its speed drifts between minutes.
    for (let r = 0; r < REPEAT; r++) {
      runs.push(await run(n, codec));
      console.log(JSON.stringify(runs.at(-1)));
      if (BARE) {
        bareRuns.push(await runBare(n, codec));
        console.log(JSON.stringify({ bare: bareRuns.at(-1) }));
      }
    }
    const byStep = (a: { stepMs: number }, b: { stepMs: number }) => a.stepMs - b.stepMs;
    runs.sort(byStep);
    bareRuns.sort(byStep);
    const date = new Date().toISOString();
    // How each row was measured goes with it: a later partial run keeps the rows it did not redo.
    const fakeWorkers = `${FLEET} clients, ${IN_PROCESS ? 'in-process' : `${Math.min(n, FLEET_THREADS)} worker thread(s)`}`;
    rows.push({ ...runs[Math.floor(runs.length / 2)]!, stepMsRange: [runs[0]!.stepMs, runs.at(-1)!.stepMs], date, repeat: REPEAT, steps: STEPS, fakeWorkers });
    if (BARE) bareRows.push({ ...bareRuns[Math.floor(bareRuns.length / 2)]!, stepMsRange: [bareRuns[0]!.stepMs, bareRuns.at(-1)!.stepMs], date, repeat: REPEAT, steps: STEPS });
  }
}
await mkdir(resolve(root, 'bench/results'), { recursive: true });
// A run of a few configurations replaces only their rows (and pieces); the others stay as last measured.
const resultPath = resolve(root, 'bench/results/overhead.json');
const earlier = await readFile(resultPath, 'utf8').then(
  (text) => {
    try {
      const d = JSON.parse(text) as { rows?: Row[]; bare?: BareRow[]; pieces?: typeof pieces };
      return { rows: Array.isArray(d.rows) ? d.rows : [], bare: Array.isArray(d.bare) ? d.bare : [], pieces: d.pieces ?? {} };
    } catch {
      console.warn(`${resultPath} is not JSON: writing this run's rows alone`);
      return { rows: [], bare: [], pieces: {} };
    }
  },
  () => ({ rows: [] as Row[], bare: [] as BareRow[], pieces: {} }),
);
const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`;
console.log(`\nmachine: ${machine}; resnet20v2 (${P.toLocaleString('en-US')} parameters), batch ${BATCH}, compute = ${DELAY_MS} ms delay, fake workers ${IN_PROCESS ? 'in the coordinator\'s thread' : 'on a worker thread'}\n`);
// A real worker does its own pieces in parallel with the others, once per step, on the path from
// one update to its gradient: the step a fleet sees is the measured one plus those.
const workerMs = (codec: CodecName) => Object.entries(pieces[codec]!).filter(([k]) => k.startsWith('worker:')).reduce((a, [, v]) => a + v, 0);
console.log('| codec | workers | step (ms) | coordinator + wire (ms) | + worker\'s own (ms) | framework cost, % of step | coordinator CPU (ms/step) | % of step | coordinator main thread busy (ms/step) | bytes/step/worker | floor (codec, with the shard\'s images) | ratio |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  const own = workerMs(r.codec);
  const cost = r.overheadMs + own;
  const range = REPEAT > 1 ? ` (${r.stepMsRange.map((x) => x.toFixed(1)).join('-')})` : '';
  console.log(`| ${r.codec} | ${r.workers} | ${r.stepMs.toFixed(1)}${range} | ${r.overheadMs.toFixed(1)} | ${own.toFixed(1)} | ${((100 * cost) / (DELAY_MS + cost)).toFixed(1)}% | ${r.cpuMsPerStep.toFixed(1)} | ${((100 * r.cpuMsPerStep) / r.stepMs).toFixed(1)}% | ${r.busyMsPerStep.toFixed(1)} | ${(r.bytesPerStepPerWorker / 1e6).toFixed(2)} MB | ${(r.floor / 1e6).toFixed(2)} MB | ${(r.bytesPerStepPerWorker / r.floor).toFixed(2)} |`);
}
console.log('\n| codec | workers | reduce (ms) | optimizer (ms) | broadcast (ms) | last shard transfer (ms) | first-to-last arrival (ms) |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) console.log(`| ${r.codec} | ${r.workers} | ${r.breakdown.reduceMs.toFixed(1)} | ${r.breakdown.optimizerMs.toFixed(1)} | ${r.breakdown.broadcastMs.toFixed(1)} | ${r.breakdown.transferMs.toFixed(1)} | ${r.breakdown.waitMs.toFixed(1)} |`);
if (BARE) {
  console.log('\n| codec | workers | bare server: step (ms) | bare: over the compute (ms) | coordinator: over the compute (ms) | the coordinator\'s own (ms) |\n| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const b of bareRows) {
    const r = rows.find((x) => x.codec === b.codec && x.workers === b.workers)!;
    const range = REPEAT > 1 ? ` (${b.stepMsRange.map((x) => x.toFixed(1)).join('-')})` : '';
    console.log(`| ${b.codec} | ${b.workers} | ${b.stepMs.toFixed(1)}${range} | ${b.overheadMs.toFixed(1)} | ${r.overheadMs.toFixed(1)} | ${(r.overheadMs - b.overheadMs).toFixed(1)} |`);
  }
}
console.log(`\n| piece | ${CODECS.join(' ms | ')} ms |\n| --- |${CODECS.map(() => ' ---: |').join('')}`);
for (const k of Object.keys(pieces[CODECS[0]!]!)) console.log(`| ${k} | ${CODECS.map((c) => (pieces[c] as Record<string, number>)[k]!.toFixed(2)).join(' | ')} |`);
const order = (r: { codec: CodecName; workers: number }) => `${['fp32', 'fp16', 'int8'].indexOf(r.codec)} ${String(r.workers).padStart(4)}`;
const mergeRows = <T extends { codec: CodecName; workers: number }>(before: T[], now: T[]) =>
  [...before.filter((r) => !now.some((n) => n.codec === r.codec && n.workers === r.workers)), ...now].sort((a, b) => order(a).localeCompare(order(b)));
await writeFile(resultPath, JSON.stringify({ machine, date: new Date().toISOString(), delayMs: DELAY_MS, rows: mergeRows(earlier.rows, rows), bare: mergeRows(earlier.bare, bareRows), pieces: { ...earlier.pieces, ...pieces } }, null, 2) + '\n');
