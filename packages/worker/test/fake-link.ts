/**
 * What the worker's tests share: an in-memory coordinator end (FakeLink), the tiny model's run,
 * and a polling wait. The test files set TensorFlow.js's backend themselves.
 */
import { PRESETS, buildGraph, initialBnStats, initialParams, weightLayout } from '@chorus/model';
import { PROTOCOL_VERSION, encodeMessage, parseMessage, type Message } from '@chorus/protocol';
import type { Connect, TransportEvents } from '../src/index.js';

export const spec = PRESETS.tiny;
export const layout = weightLayout(buildGraph(spec));
export const runtime = { kind: 'node' as const, backend: 'cpu', device: 'test', cores: 1, microBatch: 8, agent: 'test' };

/**
 * An in-memory coordinator end: records what the worker sends, on which connection, and lets
 * the test reply. deliver() and events speak for the newest connection.
 */
export class FakeLink {
  sent: Message[] = [];
  /** Every message sent, with the number of the connection it went on (from 0). */
  log: { connection: number; message: Message }[] = [];
  /** The connections the worker closed itself, by number. */
  closedByWorker: number[] = [];
  connections: TransportEvents[] = [];
  connects = 0;
  refuse = false;
  /** A coordinator that never answers a close: the worker's close() never completes. */
  holdCloses = false;
  readonly connect: Connect = async (_url, events) => {
    this.connects++;
    if (this.refuse) throw new Error('connection refused');
    const connection = this.connections.push(events) - 1;
    return {
      send: (frame) => {
        const message = parseMessage(frame);
        this.sent.push(message);
        this.log.push({ connection, message });
      },
      close: (code, reason) => {
        this.closedByWorker.push(connection);
        if (!this.holdCloses) queueMicrotask(() => events.onClose(code ?? 1000, reason ?? ''));
      },
    };
  };
  get events(): TransportEvents | null {
    return this.connections.at(-1) ?? null;
  }
  deliver(message: Message, connection = this.connections.length - 1): void {
    this.connections[connection]!.onMessage(encodeMessage(message));
  }
  async next(type: Message['type'], timeoutMs = 20_000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.sent.findIndex((m) => m.type === type);
      if (i >= 0) return this.sent.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error(`no ${type} sent`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

/** Waits (polling, bounded) until `ready` holds. */
export async function until(what: string, ready: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const welcome = (version = 0): Message => ({
  type: 'welcome',
  v: PROTOCOL_VERSION,
  workerId: 'w7',
  run: { preset: 'tiny', spec, paramCount: layout.paramCount, bnStatCount: layout.bnStatCount, bnGroup: 4, codec: 'fp32', heartbeatMs: 50 },
  version,
  params: initialParams(layout, 1),
  bnStats: initialBnStats(layout),
});

export function shardOf(count: number) {
  return {
    indices: Int32Array.from({ length: count }, (_, i) => i * 3),
    labels: Uint8Array.from({ length: count }, (_, i) => i % 10),
    pixels: new Uint8Array(count * 3072).map((_, i) => (i * 7) % 256),
  };
}
