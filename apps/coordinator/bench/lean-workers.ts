/**
 * Lean fake workers for overhead.bench.ts (the default fleet; CHORUS_BENCH_FLEET=ws runs
 * fake-workers.ts instead): WebSocket clients written straight on a TCP socket, so that the
 * fleet's own reading costs the cores the coordinator needs as little as a client can.
 *
 * Why: eight fake workers share one thread here where real workers each have a machine, so
 * whatever the fleet spends reading an update delays every worker after it, arrival spread no
 * real fleet has. With ws as the client each 2.3 MB fp32 update was read into fresh 64 KB
 * buffers, joined into one message buffer and then collected: about 2 ms per worker per step,
 * one worker after another. These clients read every message into one reused buffer (Node's
 * `onread`), look only at its header (a fake worker needs the step, shard and example count,
 * all there) and skip its payload unread. What stays is the kernel's copy out of the socket.
 *
 * Everything the coordinator sees is what a real client sends: the WebSocket handshake, masked
 * frames (so the coordinator unmasks every gradient, as it must for real workers), the gradient
 * encoded in the run's codec. The gradient's bytes are masked once, ahead of time (see
 * PremaskedGradient), where ws would copy and mask 2.3 MB per worker per step. Pings are answered.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { Packr, Unpackr } from 'msgpackr';
import * as ws from 'ws';
import { PROTOCOL_VERSION, encodeMessage, getGradientCodec, type CodecName, type EncodedVector, type Message } from '@chorus/protocol';

/** ws's frame builder (not in its type declarations): a header and the payload, masked in place unless readOnly. */
const { Sender } = ws as unknown as { Sender: { frame(data: Buffer, options: { fin: boolean; rsv1: boolean; opcode: number; mask: boolean; readOnly: boolean }): Buffer[] } };

export interface LeanWorkerOptions {
  url: string;
  token: string;
  codec: CodecName;
  paramCount: number;
  bnStatCount: number;
  delayMs: number;
}

export interface LeanWorker {
  close(): void;
}

/** A smooth, gradient-like constant: realistic magnitudes for the int8 scales, no zeros (as fake-workers.ts). */
function fakeGradient(n: number): Float32Array {
  const g = new Float32Array(n);
  for (let i = 0; i < n; i++) g[i] = 1e-3 * Math.sin(i * 0.37) + 1e-5;
  return g;
}

/** Chorus frames start with a 4-byte header length, then a msgpack map {fields, tails}. */
const HEADER_PREFIX = 4;
/** Room for a message's start: enough for any header the coordinator sends. */
const HEAD_BYTES = 64 * 1024;
const unpackr = new Unpackr({ mapsAsObjects: true, useRecords: false });
// As the protocol's codec packs headers: plain maps, no records.
const packr = new Packr({ useRecords: false, structuredClone: false });

/** `data` XORed in place with `key` from a 4-aligned start, as WebSocket masking does. */
function maskInPlace(data: Buffer, key: Buffer): void {
  for (let i = 0; i < data.length; i++) data[i]! ^= key[i & 3]!;
}

/**
 * A worker's gradient frames, masked ahead of time. Only a gradient's header changes from step to
 * step (step, shard, count); its tails (the gradient, BatchNorm moments, scales) are the same bytes
 * every step, and every tail starts at a multiple of 4 bytes into the frame, so under one masking
 * key they are masked once, here, and each step masks only the new header. The coordinator still
 * unmasks every byte, as for any client. One key per worker rather than per frame: to the
 * coordinator, whose cost this measures, any non-zero key is the same work.
 */
class PremaskedGradient {
  private readonly key = Buffer.alloc(4);
  private readonly tails: Buffer;
  private readonly descriptors: unknown[];
  private readonly fields: Record<string, unknown>;

  constructor(first: Message) {
    do randomBytes(4).copy(this.key); while (this.key.readUInt32LE(0) === 0);
    const frame = Buffer.from(encodeMessage(first));
    const headerLength = frame.readUInt32LE(0);
    const { fields, tails } = unpackr.unpack(frame.subarray(HEADER_PREFIX, HEADER_PREFIX + headerLength)) as Header;
    this.fields = fields;
    this.descriptors = tails;
    this.tails = Buffer.from(frame.subarray((HEADER_PREFIX + headerLength + 3) & ~3));
    maskInPlace(this.tails, this.key);
  }

  /** The WebSocket frame's pieces for this step's gradient: frame header, masked head, masked tails. */
  parts(step: number, shardId: number, count: number): Buffer[] {
    const header = packr.pack({ fields: { ...this.fields, step, shardId, count, lossSum: 2.3 * count }, tails: this.descriptors });
    const head = Buffer.alloc((HEADER_PREFIX + header.length + 3) & ~3);
    head.writeUInt32LE(header.length, 0);
    header.copy(head, HEADER_PREFIX);
    maskInPlace(head, this.key);
    const length = head.length + this.tails.length;
    const frameHeader = Buffer.alloc(14);
    frameHeader[0] = 0x82; // FIN, binary
    frameHeader[1] = 0x80 | 127; // masked, 64-bit length
    frameHeader.writeBigUInt64BE(BigInt(length), 2);
    this.key.copy(frameHeader, 10);
    return [frameHeader, head, this.tails];
  }
}

interface Header { fields: Record<string, unknown>; tails: [string, string, number][] }

export function leanWorker(o: LeanWorkerOptions): Promise<LeanWorker> {
  const url = new URL(o.url);
  const bnMoments = new Float32Array(o.bnStatCount).fill(0.5);
  const payload: EncodedVector = getGradientCodec(o.codec).encode(fakeGradient(o.paramCount));
  const gradient = new PremaskedGradient({
    type: 'gradient', v: PROTOCOL_VERSION, step: 0, shardId: 0, count: 0, lossSum: 0, correct: 0, computeMs: o.delayMs,
    gradient: payload.values, bnMoments, ...(payload.scales ? { scales: payload.scales } : {}),
  });
  let socket: Socket;
  let upgraded = false;
  let closed = false;
  let handshake = '';

  // The frame being read: its header so far, then what is left of its payload.
  const frameHead = Buffer.alloc(14);
  let frameHeadLength = 0;
  let reading = false;
  let frameOpcode = 0;
  let frameFin = false;
  let remaining = 0;
  // The current message: its opcode and first bytes (its Chorus header), across its frames.
  let messageOpcode = 0;
  const head = Buffer.alloc(HEAD_BYTES);
  let headLength = 0;
  // A control frame's payload (at most 125 bytes): a ping's is echoed in the pong.
  const control = Buffer.alloc(125);
  let controlLength = 0;

  const send = (opcodeOut: number, data: Buffer): void => {
    const parts = Sender.frame(data, { fin: true, rsv1: false, opcode: opcodeOut, mask: true, readOnly: false });
    socket.cork();
    for (const part of parts) socket.write(part);
    socket.uncork();
  };
  const sendMessage = (m: Message): void => {
    const frame = encodeMessage(m);
    send(2, Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength));
  };

  const onMessage = (): void => {
    if (messageOpcode !== 2 || headLength < HEADER_PREFIX) return;
    const headerLength = head.readUInt32LE(0);
    if (HEADER_PREFIX + headerLength > headLength) throw new Error(`a message's header (${headerLength} bytes) is past the ${HEAD_BYTES} bytes kept`);
    const { fields: m, tails } = unpackr.unpack(head.subarray(HEADER_PREFIX, HEADER_PREFIX + headerLength)) as Header;
    const countOf = (name: string) => tails.find((t) => t[0] === name)?.[2] ?? 0;
    if (m.type === 'assign') {
      const count = countOf('labels');
      setTimeout(() => {
        if (closed) return;
        socket.cork();
        for (const part of gradient.parts(m.step as number, m.shardId as number, count)) socket.write(part);
        socket.uncork();
      }, o.delayMs);
    } else if (m.type === 'evaluate') {
      sendMessage({ type: 'evalResult', v: PROTOCOL_VERSION, evalId: m.evalId as number, shardId: m.shardId as number, count: countOf('labels'), lossSum: 1, correct: 0 });
    }
  };

  /** Reads WebSocket frames out of `chunk`, keeping only each message's first bytes. */
  const onBytes = (chunk: Buffer): void => {
    let at = 0;
    while (at < chunk.length || (reading && remaining === 0)) {
      if (!reading) {
        // A frame header: 2 bytes, then 2 or 8 of length (a server's frames are not masked).
        frameHead[frameHeadLength++] = chunk[at++]!;
        if (frameHeadLength < 2) continue;
        const short = frameHead[1]! & 0x7f;
        if (frameHeadLength < 2 + (short === 126 ? 2 : short === 127 ? 8 : 0)) continue;
        remaining = short === 126 ? frameHead.readUInt16BE(2) : short === 127 ? Number(frameHead.readBigUInt64BE(2)) : short;
        frameOpcode = frameHead[0]! & 0x0f;
        frameFin = (frameHead[0]! & 0x80) !== 0;
        frameHeadLength = 0;
        reading = true;
        controlLength = 0;
        if (frameOpcode !== 0 && frameOpcode < 8) { messageOpcode = frameOpcode; headLength = 0; }
        continue;
      }
      const take = Math.min(remaining, chunk.length - at);
      if (frameOpcode >= 8) {
        chunk.copy(control, controlLength, at, at + take);
        controlLength += take;
      } else {
        // The 4-byte header length first, then up to the header's end; the payload is skipped.
        let from = at;
        const end = at + take;
        for (const wanted of [HEADER_PREFIX, -1]) {
          const limit = wanted > 0 ? wanted : headLength < HEADER_PREFIX ? 0 : Math.min(HEAD_BYTES, HEADER_PREFIX + head.readUInt32LE(0));
          const kept = Math.max(0, Math.min(end - from, limit - headLength));
          chunk.copy(head, headLength, from, from + kept);
          headLength += kept;
          from += kept;
        }
      }
      at += take;
      remaining -= take;
      if (remaining > 0) continue;
      reading = false;
      if (frameOpcode === 9) send(10, Buffer.from(control.subarray(0, controlLength)));
      else if (frameOpcode === 8) { closed = true; socket.end(); return; }
      else if (frameOpcode < 8 && frameFin) onMessage();
    }
  };

  return new Promise((resolve, reject) => {
    const buffer = Buffer.alloc(256 * 1024);
    socket = connect({
      host: url.hostname, port: Number(url.port),
      onread: {
        buffer,
        callback: (nread: number, buf: Uint8Array) => {
          const chunk = Buffer.from(buf.buffer, buf.byteOffset, nread);
          if (upgraded) { onBytes(chunk); return true; }
          handshake += chunk.toString('latin1');
          const end = handshake.indexOf('\r\n\r\n');
          if (end < 0) return true;
          if (!/^HTTP\/1\.1 101 /.test(handshake)) { reject(new Error(`no upgrade: ${handshake.slice(0, 200)}`)); socket.destroy(); return false; }
          upgraded = true;
          const rest = Buffer.from(handshake.slice(end + 4), 'latin1');
          handshake = '';
          sendMessage({ type: 'hello', v: PROTOCOL_VERSION, token: o.token, runtime: { kind: 'node', backend: 'fake', device: `${o.delayMs} ms delay`, cores: 1, microBatch: 4096, agent: 'bench' } });
          resolve({ close: () => { if (!closed) { closed = true; send(8, Buffer.from([0x03, 0xe8])); socket.end(); } } });
          if (rest.length) onBytes(rest);
          return true;
        },
      },
    });
    socket.setNoDelay(true);
    socket.on('error', (error) => { if (!upgraded) reject(error); else if (!closed) console.error(`lean fake worker: ${error.message}`); });
    socket.on('connect', () => {
      socket.write(
        `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
  });
}

if (!isMainThread && parentPort) {
  const { n, ...options } = workerData as LeanWorkerOptions & { n: number };
  const workers = await Promise.all(Array.from({ length: n }, () => leanWorker(options)));
  parentPort.postMessage('ready');
  parentPort.on('message', () => {
    for (const w of workers) w.close();
    parentPort!.close();
  });
}
