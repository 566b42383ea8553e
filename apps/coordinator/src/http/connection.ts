import type { WebSocket } from 'ws';
import { closeReason, encodeMessage, type Message } from '@chorus/protocol';

/** One worker's socket: counts bytes both ways and sends encoded messages. */
export class Connection {
  readonly id: number;
  bytesIn = 0;
  bytesOut = 0;
  private readonly socket: WebSocket;
  private readonly onBytesOut: (n: number) => void;

  constructor(id: number, socket: WebSocket, onBytesOut: (n: number) => void) {
    this.id = id;
    this.socket = socket;
    this.onBytesOut = onBytesOut;
  }

  get open(): boolean {
    return this.socket.readyState === this.socket.OPEN;
  }

  /** Bytes sent and not yet handed to the kernel: what a link slower than the run piles up. */
  get buffered(): number {
    return this.socket.bufferedAmount;
  }

  /** Everything sent has left for the kernel (or the socket is closed): a sent buffer is free again. */
  get drained(): boolean {
    return this.socket.readyState === this.socket.CLOSED || this.socket.bufferedAmount === 0;
  }

  send(message: Message): void {
    this.sendFrame(encodeMessage(message));
  }

  /** Sends an already encoded frame (an update is encoded once for all workers). */
  sendFrame(frame: Uint8Array): void {
    if (!this.open) return;
    this.socket.send(frame, { binary: true });
    this.bytesOut += frame.byteLength;
    this.onBytesOut(frame.byteLength);
  }

  close(code: number, reason: string): void {
    if (this.socket.readyState === this.socket.CLOSED) return;
    this.socket.close(code, closeReason(reason));
  }

  /** Drops the socket without a closing handshake (a worker that stopped answering). */
  terminate(): void {
    this.socket.terminate();
  }
}
