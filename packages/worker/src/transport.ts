/**
 * The worker's only view of the network: a message-oriented, ordered, reliable channel.
 * Node wraps the `ws` package in it, a browser the standard WebSocket.
 */
export interface Transport {
  send(frame: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export interface TransportEvents {
  onMessage(frame: Uint8Array): void;
  onClose(code: number, reason: string): void;
}

/** Opens a channel to `url`; rejects when it cannot be opened. */
export type Connect = (url: string, events: TransportEvents) => Promise<Transport>;
