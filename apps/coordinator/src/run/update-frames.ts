import { FrameWriter, encodeMessage, type Update } from '@chorus/protocol';

/** What UpdateFrames needs of a socket: a send, and whether the bytes sent have left. */
export interface FrameSink {
  sendFrame(frame: Uint8Array): void;
  /** Everything sent has been handed to the kernel (or the socket is closed). */
  readonly drained: boolean;
}

/**
 * Sends each step's update, encoded once for all workers, into a buffer reused from step to
 * step: at resnet20v2 size a fresh 2.3 MB frame per step only feeds the garbage collector. A
 * WebSocket send queues the caller's bytes without copying them, so the buffer is rewritten
 * only when every socket the previous update went to has drained; behind a slow link the
 * update gets a fresh buffer and the held one waits for the next step.
 */
export class UpdateFrames {
  private readonly writer = new FrameWriter();
  /** The sockets that may still hold the writer's buffer. */
  private holders: readonly FrameSink[] = [];

  /** Sends `update` to every sink; returns the frame (for byte counts and tests). */
  send(update: Update, sinks: readonly FrameSink[]): Uint8Array {
    const reusable = this.holders.every((s) => s.drained);
    const frame = reusable ? this.writer.encode(update) : encodeMessage(update);
    for (const sink of sinks) sink.sendFrame(frame);
    if (reusable) this.holders = [...sinks];
    return frame;
  }
}
