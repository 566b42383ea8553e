import WebSocket from 'ws';
import { PROTOCOL_VERSION, encodeMessage, parseMessage, type Assign, type Message, type WorkerRuntime } from '@chorus/protocol';

const runtime: WorkerRuntime = { kind: 'node', backend: 'wasm', device: 'rogue (test)', cores: 1, microBatch: 64, agent: 'rogue worker (test)' };

/**
 * A worker that misbehaves on purpose: it speaks the real protocol (hello, welcome, assign)
 * but answers its first assignment with whatever `answer` makes of it, a NaN gradient or a
 * wrong count, so tests can check the coordinator refuses it and re-issues the shard.
 */
export class RogueWorker {
  readonly socket: WebSocket;
  /** The error messages the coordinator sent, as `code: message`. */
  readonly errors: string[] = [];
  workerId: string | null = null;
  /** The assignment it answered. */
  assigned: Assign | null = null;
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(url: string, token: string, answer: (assign: Assign) => Message) {
    this.socket = new WebSocket(url);
    this.closed = new Promise((resolve) => this.socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.socket.on('error', () => undefined); // the close that follows is what the tests look at
    this.socket.on('open', () => this.socket.send(encodeMessage({ type: 'hello', v: PROTOCOL_VERSION, token, runtime })));
    this.socket.on('message', (data: Buffer) => {
      const m = parseMessage(new Uint8Array(data));
      if (m.type === 'welcome') this.workerId = m.workerId;
      else if (m.type === 'error') this.errors.push(`${m.code}: ${m.message}`);
      else if (m.type === 'assign' && !this.assigned) {
        this.assigned = m;
        this.socket.send(encodeMessage(answer(m)));
      }
    });
  }

  close(): void {
    this.socket.terminate();
  }
}

/** A well-formed gradient message for `assign` (all zeros), for a test to spoil. */
export function gradientFor(assign: Assign, paramCount: number, bnStatCount: number): Extract<Message, { type: 'gradient' }> {
  return {
    type: 'gradient',
    v: PROTOCOL_VERSION,
    step: assign.step,
    shardId: assign.shardId,
    count: assign.indices.length,
    lossSum: 2.3 * assign.indices.length,
    correct: 0,
    computeMs: 1,
    gradient: new Float32Array(paramCount),
    bnMoments: new Float32Array(bnStatCount),
  };
}
