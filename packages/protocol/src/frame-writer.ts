import { planFrame, writeFrame } from './codec.js';
import type { Message } from './messages.js';

/** Growth step, so a run of slightly larger messages does not reallocate every time. */
const GROWTH_BYTES = 64 * 1024;

/**
 * encodeMessage for the hot path: a worker sends a multi-megabyte gradient every step, always
 * the same size, and allocating a fresh frame for each is pure garbage-collector work. The
 * writer keeps one buffer and encodes into it.
 *
 * The frame it returns is a view of that buffer and is overwritten by the next encode. Only
 * hand it to a transport that copies or fully sends it before then: a browser WebSocket's
 * send() copies synchronously; Node's `ws` may still be writing it after send() returns, so
 * there, wait for send's callback before encoding again (or use encodeMessage).
 */
export class FrameWriter {
  private buffer: Uint8Array;

  constructor(initialByteLength = 0) {
    this.buffer = new Uint8Array(initialByteLength);
  }

  /** Bytes currently held, for memory accounting. */
  get capacity(): number {
    return this.buffer.length;
  }

  encode(msg: Message): Uint8Array {
    const plan = planFrame(msg);
    if (this.buffer.length < plan.byteLength) {
      this.buffer = new Uint8Array(Math.ceil(plan.byteLength / GROWTH_BYTES) * GROWTH_BYTES);
    }
    writeFrame(plan, this.buffer);
    return this.buffer.subarray(0, plan.byteLength);
  }
}
