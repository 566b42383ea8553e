/**
 * Fake workers for overhead.bench.ts: real WebSocket clients whose "compute" is a fixed delay
 * and whose gradient is a constant, encoded once in the run's codec. Imported by the bench
 * (in-process mode) or run as a worker thread (the default).
 *
 * They do as little as a client can, because eight of them share one core here where real
 * workers would each have a machine: a worker's own per-step work (validating the update,
 * applying a delta, error feedback, encoding and masking its gradient) would otherwise run eight
 * times in a row on one thread and show up as arrival spread that no real fleet has. So they
 * read messages without validation, send a frame written into a reused buffer, and mask with a
 * zero key (ws then skips the XOR). The bench measures those worker-side pieces one by one and
 * reports them beside the step (overhead.bench.ts).
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';
import { FrameWriter, PROTOCOL_VERSION, decodeFrame, encodeMessage, getGradientCodec, type EncodedVector, type Message } from '@chorus/protocol';

export interface FakeWorkerOptions {
  url: string;
  token: string;
  paramCount: number;
  bnStatCount: number;
  delayMs: number;
}

/** A smooth, gradient-like constant: realistic magnitudes for the int8 scales, no zeros. */
function fakeGradient(n: number): Float32Array {
  const g = new Float32Array(n);
  for (let i = 0; i < n; i++) g[i] = 1e-3 * Math.sin(i * 0.37) + 1e-5;
  return g;
}

export function fakeWorker(o: FakeWorkerOptions): Promise<WebSocket> {
  const bnMoments = new Float32Array(o.bnStatCount).fill(0.5);
  let payload: EncodedVector | null = null;
  const writer = new FrameWriter();
  const socket = new WebSocket(o.url, { generateMask: (mask: Buffer) => { mask.fill(0); } });
  socket.on('close', (code, reason) => { if (code !== 1000 && code !== 1005 && code !== 4006) console.error(`fake worker closed: ${code} ${reason}`); });
  socket.on('message', (raw: Buffer) => {
    const m = decodeFrame(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength)) as Record<string, any>;
    if (m.type === 'welcome') {
      payload = getGradientCodec(m.run.codec).encode(fakeGradient(o.paramCount));
    } else if (m.type === 'assign') {
      const count = (m.labels as Uint8Array).length;
      setTimeout(() => {
        const reply: Message = {
          type: 'gradient', v: PROTOCOL_VERSION, step: m.step, shardId: m.shardId, count,
          lossSum: 2.3 * count, correct: 0, computeMs: o.delayMs, gradient: payload!.values, bnMoments,
          ...(payload!.scales ? { scales: payload!.scales } : {}),
        };
        // The previous frame left long ago (a step is >= delayMs): the buffer can be rewritten.
        socket.send(writer.encode(reply));
      }, o.delayMs);
    } else if (m.type === 'evaluate') {
      socket.send(encodeMessage({ type: 'evalResult', v: PROTOCOL_VERSION, evalId: m.evalId, shardId: m.shardId, count: (m.labels as Uint8Array).length, lossSum: 1, correct: 0 }));
    }
  });
  return new Promise((resolve) =>
    socket.on('open', () => {
      socket.send(encodeMessage({ type: 'hello', v: PROTOCOL_VERSION, token: o.token, runtime: { kind: 'node', backend: 'fake', device: `${o.delayMs} ms delay`, cores: 1, microBatch: 4096, agent: 'bench' } }));
      resolve(socket);
    }),
  );
}

if (!isMainThread && parentPort) {
  const { n, ...options } = workerData as FakeWorkerOptions & { n: number };
  const sockets = await Promise.all(Array.from({ length: n }, () => fakeWorker(options)));
  parentPort.postMessage('ready');
  parentPort.on('message', () => {
    for (const s of sockets) s.close();
    parentPort!.close();
  });
}
