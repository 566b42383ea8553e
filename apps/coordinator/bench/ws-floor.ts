/**
 * The floor under the framework-cost bench (overhead.bench.ts, CHORUS_BENCH_FLOOR=1): a
 * WebSocket server that moves exactly a step's bytes and does nothing else. Each step it sends
 * every worker an update of the codec's size and a shard of 16 examples per worker, as the
 * coordinator does, and waits until each has answered with its gradient, which ws receives
 * (reads, joins, unmasks) and this server then drops: no decoding, validation, sum, optimizer
 * or encoding. The same fake workers drive it. What a step takes above the compute here is what
 * Node, ws, the kernel's loopback and the emulated fleet cost on this machine before Chorus does
 * anything; the coordinator's own cost is the difference.
 *
 * Run by the bench as its own process: node --import tsx bench/ws-floor.ts WORKERS CODEC PARAMS BN_STATS STEPS.
 * Prints `port N` when listening, then one JSON line: the steps' durations in ms.
 */
import { WebSocketServer, type WebSocket } from 'ws';
import { PROTOCOL_VERSION, encodeMessage, getGradientCodec, isCodecName, type Message } from '@chorus/protocol';

const [workers, codecName, paramCount, bnStatCount, steps] = process.argv.slice(2);
const n = Number(workers);
const P = Number(paramCount);
const S = Number(bnStatCount);
const stepCount = Number(steps);
if (!isCodecName(codecName ?? '') || !(n > 0) || !(P > 0) || !(S > 0) || !(stepCount > 2)) {
  throw new Error('usage: ws-floor.ts WORKERS CODEC PARAMS BN_STATS STEPS');
}
const codec = getGradientCodec(codecName as 'fp32' | 'fp16' | 'int8');
const EXAMPLES = 16;

// Encoded once, like the coordinator's update (UpdateFrames): the codec's payload for P values.
const bnStats = new Float32Array(S).fill(0.5);
const delta = codec.encode(Float32Array.from({ length: P }, (_, i) => 1e-3 * Math.sin(i)));
const update = encodeMessage(
  codec.name === 'fp32'
    ? { type: 'update', v: PROTOCOL_VERSION, version: 1, params: new Float32Array(P), bnStats }
    : { type: 'update', v: PROTOCOL_VERSION, version: 1, delta: delta.values, bnStats, ...(delta.scales ? { scales: delta.scales } : {}) },
);
const shardOf = (step: number, shardId: number): Uint8Array =>
  encodeMessage({
    type: 'assign', v: PROTOCOL_VERSION, step, version: step, shardId, augmentSeed: 1,
    indices: Int32Array.from({ length: EXAMPLES }, (_, i) => i), labels: new Uint8Array(EXAMPLES), pixels: new Uint8Array(EXAMPLES * 3072),
  } as Message);

const sockets: WebSocket[] = [];
const durations: number[] = [];
let step = 0;
let answered = 0;
let startedAt = 0;

function startStep(): void {
  startedAt = performance.now();
  answered = 0;
  // As the coordinator: the update to everyone, then the round's shards.
  for (const s of sockets) s.send(update, { binary: true });
  sockets.forEach((s, i) => s.send(shardOf(step, i), { binary: true }));
}

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 64 * 1024 * 1024 }, () => {
  const address = wss.address();
  console.log(`port ${typeof address === 'object' && address ? address.port : 0}`);
});
wss.on('connection', (socket) => {
  let greeted = false;
  socket.on('message', (data: Buffer) => {
    if (!greeted) {
      // The hello: the fake worker needs the run's codec from a welcome, nothing else.
      greeted = true;
      socket.send(encodeMessage({ type: 'welcome', v: PROTOCOL_VERSION, workerId: `w${sockets.length}`, run: { codec: codec.name } } as unknown as Message), { binary: true });
      sockets.push(socket);
      if (sockets.length === n) startStep();
      return;
    }
    // Only a gradient (at least a byte a parameter) answers a shard: anything smaller is not one.
    if (data.length < P) return;
    if (++answered < n) return;
    durations.push(performance.now() - startedAt);
    if (++step < stepCount) return startStep();
    console.log(JSON.stringify(durations));
    for (const s of sockets) s.close();
    wss.close();
  });
});
