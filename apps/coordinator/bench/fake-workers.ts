/**
 * Fake workers for overhead.bench.ts: real WebSocket clients whose "compute" is a fixed delay
 * and whose gradient is a constant, encoded once in the run's codec. Imported by the bench
 * (in-process mode) or run as a worker thread (the default).
 *
 * They do as little as a client can, because eight of them share one core here where real
 * workers would each have a machine: a worker's own per-step work (validating the update,
 * applying a delta, error feedback, encoding and masking its gradient) would otherwise run eight
 * times in a row on one thread and show up as arrival spread that no real fleet has. So they
 * read messages without validation and send their gradient from a reused buffer, masked in
 * place: ws would copy a 2.3 MB frame to mask it. The mask is random, as every real client's is,
 * so the coordinator unmasks each gradient as it must for real workers (ws skips that for a zero
 * key). The bench measures the worker-side pieces one by one and reports them beside the step
 * (overhead.bench.ts).
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { Socket } from 'node:net';
import WebSocket, * as ws from 'ws';
import { FrameWriter, PROTOCOL_VERSION, decodeFrame, encodeMessage, getGradientCodec, type EncodedVector, type Message } from '@chorus/protocol';

/** ws's frame builder (not in its type declarations): a header and the payload, masked in place unless readOnly. */
const { Sender } = ws as unknown as { Sender: { frame(data: Buffer, options: { fin: boolean; rsv1: boolean; opcode: number; mask: boolean; readOnly: boolean }): Buffer[] } };

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
  const socket = new WebSocket(o.url);
  socket.on('close', (code, reason) => { if (code !== 1000 && code !== 1005 && code !== 4006) console.error(`fake worker closed: ${code} ${reason}`); });
  socket.on('message', (raw: Buffer) => {
    const m = decodeFrame(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength)) as Record<string, any>;
    if (m.type === 'welcome') {
      payload = getGradientCodec(m.run.codec).encode(fakeGradient(o.paramCount));
    } else if (m.type === 'assign') {
      const count = (m.labels as Uint8Array).length;
      setTimeout(() => {
        // Written past ws, so its checks are here: nothing after a close, and the reused buffer
        // (masked in place) only once everything written before has left; else a fresh frame.
        const raw = (socket as unknown as { _socket: Socket })._socket;
        if (socket.readyState !== WebSocket.OPEN) return;
        const reply: Message = {
          type: 'gradient', v: PROTOCOL_VERSION, step: m.step, shardId: m.shardId, count,
          lossSum: 2.3 * count, correct: 0, computeMs: o.delayMs, gradient: payload!.values, bnMoments,
          ...(payload!.scales ? { scales: payload!.scales } : {}),
        };
        const frame = raw.writableLength === 0 ? writer.encode(reply) : encodeMessage(reply);
        // ws's own framing with a random key, masking the payload where it lies (readOnly: false),
        // written to the connection's socket as one WebSocket frame.
        const parts = Sender.frame(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength), { fin: true, rsv1: false, opcode: 2, mask: true, readOnly: false });
        raw.cork();
        for (const part of parts) raw.write(part);
        raw.uncork();
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
