/**
 * Fake workers for overhead.bench.ts: real WebSocket clients whose "compute" is a fixed delay
 * and whose gradient is a constant. Imported by the bench (in-process mode) or run as a worker
 * thread (the default), so their own encoding, masking and decoding do not run on the
 * coordinator's thread, as with remote workers.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';
import { PROTOCOL_VERSION, encodeMessage, parseMessage, type Message } from '@chorus/protocol';

export interface FakeWorkerOptions {
  url: string;
  token: string;
  paramCount: number;
  bnStatCount: number;
  delayMs: number;
}

export function fakeWorker(o: FakeWorkerOptions): Promise<WebSocket> {
  const gradient = new Float32Array(o.paramCount).fill(1e-4);
  const bnMoments = new Float32Array(o.bnStatCount).fill(0.5);
  const socket = new WebSocket(o.url);
  socket.on('close', (code, reason) => { if (code !== 1000 && code !== 1005 && code !== 4006) console.error(`fake worker closed: ${code} ${reason}`); });
  socket.on('message', (raw: Buffer) => {
    const m = parseMessage(new Uint8Array(raw), { paramCount: o.paramCount, bnStatCount: o.bnStatCount, maxShardExamples: 1 << 20 });
    if (m.type === 'assign') {
      setTimeout(() => {
        const reply: Message = {
          type: 'gradient', v: PROTOCOL_VERSION, step: m.step, shardId: m.shardId, count: m.labels.length,
          lossSum: 2.3 * m.labels.length, correct: 0, computeMs: o.delayMs, gradient, bnMoments,
        };
        socket.send(encodeMessage(reply));
      }, o.delayMs);
    } else if (m.type === 'evaluate') {
      socket.send(encodeMessage({ type: 'evalResult', v: PROTOCOL_VERSION, evalId: m.evalId, shardId: m.shardId, count: m.labels.length, lossSum: 1, correct: 0 }));
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
