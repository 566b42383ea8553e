/**
 * Chorus over emulated links: a real coordinator process and N real worker processes
 * (bench-worker.ts: the real runtime, codec and protocol; compute is a sleep per example and
 * the gradient a real one captured once), each worker in its own Linux network namespace
 * joined to the coordinator's namespace by a veth pair shaped with tc tbf at 100 Mbit/s or
 * 1 Gbit/s in both directions. Per configuration: step time, bytes up and down per worker
 * (on the veths), the coordinator's own time (its step breakdown), and scaling efficiency.
 *
 *   npm run bench                                   (all benches; this one needs root, ip and tc; it runs
 *                                                    the default table, then the wire-bound pass below)
 *   npx tsx bench/links.bench.ts --ms-per-example 0.5 --workers 8 --rates 100mbit --steps 10
 *                                                   (GPU-like compute: the wire is the step, where the
 *                                                    issue's targets for int8 and fp16 are set)
 *   cd apps/node-worker && npx tsx bench/links.bench.ts [--codec fp32,fp16,int8] [--workers 1,2,4,8]
 *        [--rates 100mbit,1gbit] [--steps 6] [--ms-per-example 12.5]
 *   npx tsx bench/links.bench.ts --codec int8,int8+lr4 --rates 100mbit/10mbit --ms-per-example 0.5 --workers 8 --steps 10
 *                                                   (low-rank gradients, --low-rank 4, over a link
 *                                                    of 100 Mbit/s down and 10 up)
 *
 * Everything lives in namespaces named chorusbench-*: the coordinator's (10.233.i.1 on each
 * worker's veth, and 10.233.0.2 on an unshaped control veth whose host end, chorusbench0, is
 * 10.233.0.1), and one per worker (10.233.i.2). No other address is used. Leftovers of an
 * interrupted run are removed at start; the namespaces and every process are removed at the
 * end, on failure and on Ctrl-C. Without root, ip or tc it skips and says why.
 * Env: CHORUS_BENCH_LINKS=0 skips it; CHORUS_BENCH_CODECS, CHORUS_BENCH_WORKERS, CHORUS_BENCH_RATES
 * stand for the flags.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { PRESETS, buildGraph, weightLayout } from '@chorus/model';
import { LowRankPlan, getGradientCodec, isCodecName, type Status, type StepRecord } from '@chorus/protocol';
import { ensureCapturedGradient } from './captured-gradient.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../..');
const list = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);
const cli = new Command()
  .option('--codec <list>', 'gradient codecs, passed to the coordinator as --codec; CODEC+lrR adds --low-rank R (e.g. int8+lr4)', process.env.CHORUS_BENCH_CODECS ?? 'fp32,fp16,int8')
  .option('--workers <list>', 'worker counts', process.env.CHORUS_BENCH_WORKERS ?? '1,2,4,8')
  .option('--rates <list>', 'link rates (tc syntax), one rate both ways or DOWN/UP (e.g. 100mbit/10mbit)', process.env.CHORUS_BENCH_RATES ?? '100mbit,1gbit')
  .option('--steps <n>', 'measured steps per configuration (after 2 warm-up steps)', Number, 6)
  .option('--ms-per-example <ms>', 'simulated compute per example (12.5: 1.6 s for batch 128 on one worker, 200 ms per shard at 8)', Number, 12.5)
  .parse()
  .opts<{ codec: string; workers: string; rates: string; steps: number; msPerExample: number }>();

const PREFIX = 'chorusbench';
const COORD_NS = `${PREFIX}-c`;
const HOST_IF = `${PREFIX}0`;
const workerNs = (i: number) => `${PREFIX}-w${i}`;
const CONTROL = 'http://10.233.0.2:8080';
const TOKEN = 'chorus-bench-links';
const BATCH = 128;
const BN_GROUP = 8;
const WARMUP_STEPS = 2; // the first steps measure worker speeds and pay for start-up
const P = 570_602; // resnet20v2, checked against the coordinator's status below
const codecs = list(cli.codec);
const workerCounts = list(cli.workers).map(Number);
const rates = list(cli.rates);
const maxWorkers = Math.max(...workerCounts);
const cifarDir = process.env.CHORUS_CIFAR_DIR ?? resolve(root, '../shared/datasets/cifar-10-batches-bin');
const gradientFile = resolve(tmpdir(), 'chorus-bench', `resnet20v2-bn${BN_GROUP}-16.grad`);

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}
function trySh(cmd: string, args: string[]): void {
  try {
    sh(cmd, args);
  } catch {
    // cleanup of something that may not exist
  }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ can we?

function whyNot(): string | null {
  if (process.env.CHORUS_BENCH_LINKS === '0') return 'CHORUS_BENCH_LINKS=0';
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'creating network namespaces needs root';
  for (const tool of ['ip', 'tc']) {
    try {
      sh(tool, ['-V']);
    } catch {
      return `\`${tool}\` (iproute2) is not installed`;
    }
  }
  return null;
}

// ------------------------------------------------------------------ namespaces

const children = new Set<ChildProcess>();

function killChildren(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/** Removes every namespace with our prefix (and any process left in one), and the control veth. */
function teardown(): void {
  let names: string[] = [];
  try {
    names = sh('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(`${PREFIX}-`));
  } catch {
    return;
  }
  for (const ns of names) {
    let pids: string[] = [];
    try {
      pids = sh('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean);
    } catch {
      // gone already
    }
    for (const pid of pids) trySh('kill', ['-9', pid]);
    trySh('ip', ['netns', 'del', ns]);
  }
  trySh('ip', ['link', 'del', HOST_IF]);
}

function setup(): void {
  teardown();
  sh('ip', ['netns', 'add', COORD_NS]);
  sh('ip', ['-n', COORD_NS, 'link', 'set', 'lo', 'up']);
  // Unshaped control link: the bench reads /api/status and /metrics over it.
  sh('ip', ['link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', 'ctl', 'netns', COORD_NS]);
  sh('ip', ['addr', 'add', '10.233.0.1/30', 'dev', HOST_IF]);
  sh('ip', ['link', 'set', HOST_IF, 'up']);
  sh('ip', ['-n', COORD_NS, 'addr', 'add', '10.233.0.2/30', 'dev', 'ctl']);
  sh('ip', ['-n', COORD_NS, 'link', 'set', 'ctl', 'up']);
  for (let i = 1; i <= maxWorkers; i++) {
    const ns = workerNs(i);
    sh('ip', ['netns', 'add', ns]);
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    sh('ip', ['link', 'add', `c${i}`, 'netns', COORD_NS, 'type', 'veth', 'peer', 'name', `w${i}`, 'netns', ns]);
    sh('ip', ['-n', COORD_NS, 'addr', 'add', `10.233.${i}.1/30`, 'dev', `c${i}`]);
    sh('ip', ['-n', ns, 'addr', 'add', `10.233.${i}.2/30`, 'dev', `w${i}`]);
    sh('ip', ['-n', COORD_NS, 'link', 'set', `c${i}`, 'up']);
    sh('ip', ['-n', ns, 'link', 'set', `w${i}`, 'up']);
  }
}

/**
 * tbf on each end's egress, so uploads and downloads are both limited. The burst must hold at
 * least one GSO packet (64 KiB on a veth) and a timer tick's worth of bytes at the rate; the
 * sizes here were checked by timing 2.3 MB each way (verifyShaping).
 */
/** A link as the bench names it: one rate both ways, or DOWN/UP (e.g. 100mbit/10mbit, home broadband). */
function shape(rate: string): void {
  const [down, up = down] = rate.split('/') as [string, string?];
  const burst = (r: string) => (parseRate(r) >= 1e9 ? '256kb' : '64kb');
  for (let i = 1; i <= maxWorkers; i++) {
    // Each end shapes what it sends: the coordinator's end the worker's downlink, the worker's its uplink.
    sh('tc', ['-n', COORD_NS, 'qdisc', 'replace', 'dev', `c${i}`, 'root', 'tbf', 'rate', down, 'burst', burst(down), 'latency', '400ms']);
    sh('tc', ['-n', workerNs(i), 'qdisc', 'replace', 'dev', `w${i}`, 'root', 'tbf', 'rate', up!, 'burst', burst(up!), 'latency', '400ms']);
  }
}

function parseRate(rate: string): number {
  const m = /^(\d+(?:\.\d+)?)(k|m|g)?bit$/i.exec(rate);
  if (!m) throw new Error(`rate ${rate}: use e.g. 100mbit or 1gbit`);
  return Number(m[1]) * ({ k: 1e3, m: 1e6, g: 1e9 }[(m[2] ?? '').toLowerCase()] ?? 1);
}

/** Bytes each of the coordinator's worker veths has received (up) and sent (down). */
function vethBytes(n: number): { up: number[]; down: number[] } {
  const links = JSON.parse(sh('ip', ['-n', COORD_NS, '-s', '-j', 'link', 'show'])) as { ifname: string; stats64: { rx: { bytes: number }; tx: { bytes: number } } }[];
  const up: number[] = [];
  const down: number[] = [];
  for (let i = 1; i <= n; i++) {
    const l = links.find((x) => x.ifname === `c${i}`);
    if (!l) throw new Error(`veth c${i} is missing`);
    up.push(l.stats64.rx.bytes);
    down.push(l.stats64.tx.bytes);
  }
  return { up, down };
}

// ------------------------------------------------------------------ processes

function start(ns: string, args: string[], cwd: string, label: string, tail: string[]): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const keep = (d: Buffer) => {
    for (const line of d.toString().split('\n')) if (line.trim()) tail.push(`${label}: ${line}`);
    if (tail.length > 40) tail.splice(0, tail.length - 40);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return child;
}

async function stopAll(): Promise<void> {
  const exits = [...children].map((c) => (c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => c.once('exit', () => r()))));
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  const timer = setTimeout(killChildren, 3000);
  await Promise.all(exits);
  clearTimeout(timer);
  children.clear();
}

async function status(): Promise<Status> {
  const res = await fetch(`${CONTROL}/api/status`);
  if (!res.ok) throw new Error(`/api/status: HTTP ${res.status}`);
  return (await res.json()) as Status;
}

/** What the coordinator counts itself: WebSocket bytes received (up) and sent (down), frame headers included. */
async function socketBytes(): Promise<{ up: number; down: number }> {
  const text = await (await fetch(`${CONTROL}/metrics`)).text();
  const counter = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return { up: counter('chorus_bytes_received_total'), down: counter('chorus_bytes_sent_total') };
}

/**
 * The least a worker's step can move in a codec: its gradient up, and the update plus its
 * shard's images and labels (3,073 bytes an example) down, as the codec packs them (int8 with
 * its scales).
 */
function floorBytes(spec: string, workers: number): { up: number; down: number } {
  const { codec, lowRank } = parseSpec(spec);
  const wire = getGradientCodec(codec);
  const payload = wire.wireBytes(P);
  if (lowRank === undefined) return { up: payload, down: payload + (BATCH / workers) * 3073 };
  // Low-rank: a step's projection up (right and left steps alternate, so their mean), and the
  // weights down as the codec sends them, with the next step's factors (float32).
  const plan = new LowRankPlan(P, weightLayout(buildGraph(PRESETS.resnet20v2)).params, lowRank);
  const up = (wire.wireBytes(plan.payloadLength('right')) + wire.wireBytes(plan.payloadLength('left'))) / 2;
  const factors = (4 * (plan.factorLength('right') + plan.factorLength('left'))) / 2;
  return { up, down: payload + factors + (BATCH / workers) * 3073 };
}

/** A configuration as the bench names it: a codec, and with +lrR low-rank gradients of rank R. */
function parseSpec(spec: string): { codec: string; lowRank?: number } {
  const [codec, rank] = spec.split('+lr');
  return rank === undefined ? { codec: codec! } : { codec: codec!, lowRank: Number(rank) };
}

async function control(action: 'pause' | 'resume'): Promise<void> {
  const res = await fetch(`${CONTROL}/api/control`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ action }) });
  if (!res.ok) throw new Error(`/api/control ${action}: HTTP ${res.status} ${await res.text()}`);
}

async function until<T>(what: string, deadlineMs: number, probe: () => Promise<T | null | undefined | false>, tail: string[]): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch {
      // not up yet
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${tail.join('\n')}`);
    await sleep(50);
  }
}

/** Paused and nothing moving: no step in flight, the last update delivered. */
async function quiesce(n: number, tail: string[]): Promise<{ step: number; bytes: { up: number[]; down: number[] }; socket: { up: number; down: number } }> {
  await control('pause');
  let last = { step: -1, total: -1 };
  let calm = 0;
  return until('the run to pause', 60_000, async () => {
    await sleep(150);
    const s = await status();
    const bytes = vethBytes(n);
    const total = [...bytes.up, ...bytes.down].reduce((a, b) => a + b, 0);
    // Heartbeats still flow while paused: a few hundred bytes is calm.
    calm = s.step === last.step && total - last.total < 4096 ? calm + 1 : 0;
    last = { step: s.step, total };
    return calm >= 2 && { step: s.step, bytes, socket: await socketBytes() };
  }, tail);
}

interface Row {
  codec: string;
  rate: string;
  workers: number;
  steps: number;
  stepMs: number;
  imagesPerSecond: number;
  computeMs: number;
  transferMs: number;
  coordinatorMs: number;
  reduceMs: number;
  optimizerMs: number;
  broadcastMs: number;
  /** On the veths: TCP/IP headers and the other direction's ACKs included. */
  upBytesPerWorker: number;
  downBytesPerWorker: number;
  /** As the coordinator's WebSocket layer counts them: what Chorus itself sends. */
  socketUpBytesPerWorker: number;
  socketDownBytesPerWorker: number;
  floorUpBytes: number;
  floorDownBytes: number;
  efficiency: number | null;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function runConfig(codec: string, rate: string, n: number, codecFlag: boolean): Promise<Row> {
  const tail: string[] = [];
  const spec = parseSpec(codec);
  const coordinatorArgs = [
    // The V8 flag `npm start` gives the coordinator (package.json; docs/operations.md, "Sizing").
    '--initial-old-space-size=64', resolve(root, 'apps/coordinator/dist/cli.js'), '--host', '0.0.0.0', '--port', '8080', '--data', cifarDir,
    '--preset', 'resnet20v2', '--batch', String(BATCH), '--steps', '100000', '--bn-group', String(BN_GROUP), '--warmup', '1',
    '--eval-every', '0', '--eval-examples', '1', '--token', TOKEN, '--min-workers', String(n),
    ...(codecFlag ? ['--codec', spec.codec] : []),
    ...(spec.lowRank === undefined ? [] : ['--low-rank', String(spec.lowRank)]),
  ];
  try {
    const coordinator = start(COORD_NS, coordinatorArgs, root, 'coordinator', tail);
    const st = await until('the coordinator to listen', 60_000, async () => coordinator.exitCode === null && (await status()), tail);
    if (st.paramCount !== P) throw new Error(`expected resnet20v2 with ${P} parameters, got ${st.paramCount}`);
    for (let i = 1; i <= n; i++) {
      start(workerNs(i), ['--import', 'tsx', resolve(here, 'bench-worker.ts'), `ws://10.233.${i}.1:8080/ws`, '--token', TOKEN, '--gradient', gradientFile, '--ms-per-example', String(cli.msPerExample), '--name', `w${i}`], resolve(here, '..'), `w${i}`, tail);
    }
    await until('the warm-up steps', 120_000, async () => (await status()).step >= WARMUP_STEPS, tail);
    const a = await quiesce(n, tail);
    await control('resume');
    await until('the measured steps', 120_000, async () => (await status()).step >= a.step + cli.steps, tail);
    const b = await quiesce(n, tail);
    const s = await status();
    const steps = s.recentSteps.filter((r: StepRecord) => r.step > a.step && r.step <= b.step);
    if (steps.length !== b.step - a.step) throw new Error(`status has ${steps.length} of the ${b.step - a.step} measured steps`);
    if (steps.some((r) => r.workers !== n)) throw new Error(`a measured step ran with other than ${n} workers\n${tail.join('\n')}`);
    const k = b.step - a.step;
    const perWorker = (x: number[], y: number[]) => mean(x.map((v, i) => v - y[i])) / k;
    const stepMs = mean(steps.map((r) => r.seconds * 1000));
    const bd = (f: (r: StepRecord) => number) => mean(steps.map(f));
    return {
      codec, rate, workers: n, steps: k, stepMs, imagesPerSecond: (BATCH * 1000) / stepMs,
      computeMs: bd((r) => r.breakdown?.computeMs ?? NaN),
      transferMs: bd((r) => r.breakdown?.transferMs ?? NaN),
      reduceMs: bd((r) => r.breakdown?.reduceMs ?? NaN),
      optimizerMs: bd((r) => r.breakdown?.optimizerMs ?? NaN),
      broadcastMs: bd((r) => r.breakdown?.broadcastMs ?? NaN),
      coordinatorMs: bd((r) => (r.breakdown ? r.breakdown.reduceMs + r.breakdown.optimizerMs + r.breakdown.broadcastMs : NaN)),
      upBytesPerWorker: perWorker(b.bytes.up, a.bytes.up),
      downBytesPerWorker: perWorker(b.bytes.down, a.bytes.down),
      socketUpBytesPerWorker: (b.socket.up - a.socket.up) / n / k,
      socketDownBytesPerWorker: (b.socket.down - a.socket.down) / n / k,
      floorUpBytes: floorBytes(codec, n).up,
      floorDownBytes: floorBytes(codec, n).down,
      efficiency: null,
    };
  } finally {
    await stopAll();
  }
}

/** Times 2.3 MB (one fp32 gradient) each way over worker 1's link with plain TCP. */
async function verifyShaping(): Promise<{ upMs: number; downMs: number }> {
  const N = P * 4;
  const server = `const net=require('net');net.createServer(s=>{let g=0;s.on('data',d=>{g+=d.length;if(g>=${N})s.end(Buffer.alloc(${N}))})}).listen(9000,'10.233.1.1',()=>console.log('up'))`;
  const client = `const net=require('net');const s=net.connect(9000,'10.233.1.1',()=>{const t0=performance.now();let t1=0,g=0;s.on('data',d=>{if(!t1)t1=performance.now();g+=d.length;if(g>=${N}){console.log(JSON.stringify({upMs:t1-t0,downMs:performance.now()-t1}));s.destroy()}});s.write(Buffer.alloc(${N}))})`;
  const tail: string[] = [];
  try {
    const srv = start(COORD_NS, ['-e', server], root, 'tcp-server', tail);
    await until('the TCP test server', 10_000, async () => tail.some((l) => l.endsWith('up')), tail);
    const out = execFileSync('ip', ['netns', 'exec', workerNs(1), process.execPath, '-e', client], { encoding: 'utf8', timeout: 20_000 });
    srv.kill('SIGTERM');
    return JSON.parse(out) as { upMs: number; downMs: number };
  } finally {
    await stopAll();
  }
}

// ------------------------------------------------------------------ main

const reason = whyNot();
if (reason) {
  console.log(`links bench skipped: ${reason}`);
  process.exit(0);
}
const bad = codecs.filter((c) => { const { codec, lowRank } = parseSpec(c); return !isCodecName(codec) || (lowRank !== undefined && !(Number.isInteger(lowRank) && lowRank >= 1)); });
if (bad.length) throw new Error(`unknown codec ${bad.join(', ')}; use fp32, fp16, int8, optionally with +lrR (R a rank, e.g. int8+lr4)`);

// A coordinator without --codec can only measure fp32: say so rather than fail.
const help = execFileSync(process.execPath, [resolve(root, 'apps/coordinator/dist/cli.js'), '--help'], { encoding: 'utf8' });
// The option's help (its first line and the wrapped ones after it) names the codecs this build knows.
const helpLines = help.split('\n');
const codecAt = helpLines.findIndex((l) => l.trimStart().startsWith('--codec'));
const codecEnd = codecAt < 0 ? -1 : helpLines.findIndex((l, i) => i > codecAt && /^\s*(-|$)/.test(l));
const codecLine = codecAt < 0 ? '' : helpLines.slice(codecAt, codecEnd < 0 ? undefined : codecEnd).map((l) => l.trim()).join(' ');
const codecFlag = codecLine !== '';
const lowRankFlag = helpLines.some((l) => l.trimStart().startsWith('--low-rank'));
const runnable = codecs.filter((spec) => {
  const { codec, lowRank } = parseSpec(spec);
  return (codec === 'fp32' || new RegExp(`\\b${codec}\\b`).test(codecLine)) && (lowRank === undefined || lowRankFlag);
});
for (const c of codecs) if (!runnable.includes(c)) console.log(`links bench: codec ${c} skipped: this coordinator's --codec does not offer it (${codecLine.trim() || 'no --codec option'})`);

console.log(`links bench: capturing one real resnet20v2 gradient on WASM (once, cached in ${gradientFile})`);
await ensureCapturedGradient(gradientFile, cifarDir, { bnGroup: BN_GROUP, count: BATCH / 8 });

const onSignal = (signal: NodeJS.Signals) => {
  killChildren();
  teardown();
  console.error(`links bench: ${signal}: processes stopped, namespaces removed`);
  process.exit(130);
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

const rows: Row[] = [];
const shaping: Record<string, { upMs: number; downMs: number }> = {};
const started = Date.now();
try {
  try {
    setup();
  } catch (error) {
    console.log(`links bench skipped: cannot create network namespaces: ${(error as Error).message.split('\n')[0]}`);
    process.exit(0);
  }
  for (const rate of rates) {
    shape(rate);
    shaping[rate] = await verifyShaping();
    const mbit = (ms: number) => ((P * 4 * 8) / (ms / 1000) / 1e6).toFixed(0);
    console.log(`links bench: ${rate}: 2.28 MB up in ${shaping[rate].upMs.toFixed(1)} ms (${mbit(shaping[rate].upMs)} Mbit/s), down in ${shaping[rate].downMs.toFixed(1)} ms (${mbit(shaping[rate].downMs)} Mbit/s)`);
    for (const codec of runnable) {
      for (const n of workerCounts) {
        const row = await runConfig(codec, rate, n, codecFlag);
        const one = rows.find((r) => r.codec === codec && r.rate === rate && r.workers === 1);
        row.efficiency = one ? row.imagesPerSecond / (n * one.imagesPerSecond) : n === 1 ? 1 : null;
        rows.push(row);
        console.log(JSON.stringify(row));
      }
    }
  }
} finally {
  killChildren();
  teardown();
}

const machine = `${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`;
const mb = (b: number) => `${(b / 1e6).toFixed(2)}`;
console.log(`\nmachine: ${machine}; resnet20v2 (${P.toLocaleString('en-US')} parameters), batch ${BATCH}, BatchNorm groups of ${BN_GROUP}, compute ${cli.msPerExample} ms/example (sleep), ${cli.steps} steps after ${WARMUP_STEPS} warm-up, ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
// The issue's targets: at 100 Mbit/s and 8 workers, int8 at most 0.35 x fp32's step and fp16 at most 0.6 x.
const TARGETS: Record<string, number> = { fp16: 0.6, int8: 0.35 };
const vsFp32 = (r: Row) => {
  const base = rows.find((x) => x.codec === 'fp32' && x.rate === r.rate && x.workers === r.workers);
  if (!base) return 'n/a';
  const ratio = r.stepMs / base.stepMs;
  const target = r.rate === '100mbit' && r.workers === 8 ? TARGETS[r.codec] : undefined;
  return `${ratio.toFixed(2)}${target === undefined ? '' : ratio <= target ? ` (target ${target}: met)` : ` (target ${target}: not met)`}`;
};
console.log('| codec | link | workers | step (ms) | vs fp32 | images/s | efficiency | compute (ms) | transfer (ms) | coordinator (ms) | up MB/worker | down MB/worker | up / down floor MB | sent by Chorus, / floor (up, down) | on the wire, / floor (up, down) |');
console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  const ratio = (x: number, floor: number) => (x / floor).toFixed(3);
  console.log(`| ${r.codec} | ${r.rate} | ${r.workers} | ${r.stepMs.toFixed(0)} | ${vsFp32(r)} | ${r.imagesPerSecond.toFixed(1)} | ${r.efficiency === null ? 'n/a' : `${(100 * r.efficiency).toFixed(0)}%`} | ${r.computeMs.toFixed(0)} | ${r.transferMs.toFixed(0)} | ${r.coordinatorMs.toFixed(1)} | ${mb(r.upBytesPerWorker)} | ${mb(r.downBytesPerWorker)} | ${mb(r.floorUpBytes)} / ${mb(r.floorDownBytes)} | ${ratio(r.socketUpBytesPerWorker, r.floorUpBytes)}, ${ratio(r.socketDownBytesPerWorker, r.floorDownBytes)} | ${ratio(r.upBytesPerWorker, r.floorUpBytes)}, ${ratio(r.downBytesPerWorker, r.floorDownBytes)} |`);
}
await mkdir(resolve(root, 'bench/results'), { recursive: true });
// The default compute keeps links.json; other computes (the wire-bound pass) get a file of their own.
const resultName = cli.msPerExample === 12.5 ? 'links.json' : `links-${cli.msPerExample}ms-per-example.json`;
// A run of a few configurations replaces only their rows (each row says when it was measured; its
// efficiency is null where its run had no 1-worker row); the others stay as last measured.
const resultPath = resolve(root, 'bench/results', resultName);
const keyOf = (r: Row) => `${r.codec} ${r.rate} ${r.workers}`;
const earlier = await readFile(resultPath, 'utf8').then(
  (text) => {
    try {
      const d = JSON.parse(text) as { rows?: Row[]; shaping?: Record<string, unknown> };
      return { rows: Array.isArray(d.rows) ? d.rows : [], shaping: d.shaping ?? {} };
    } catch {
      console.warn(`${resultPath} is not JSON: writing this run's rows alone`);
      return { rows: [], shaping: {} };
    }
  },
  () => ({ rows: [] as Row[], shaping: {} }),
);
const date = new Date().toISOString();
const merged = [...earlier.rows.filter((r) => !rows.some((n) => keyOf(n) === keyOf(r))), ...rows.map((r) => ({ ...r, date }))];
await writeFile(resultPath, JSON.stringify({ machine, date, msPerExample: cli.msPerExample, shaping: { ...earlier.shaping, ...shaping }, rows: merged }, null, 2) + '\n');
