import WebSocket from 'ws';
import { closeReason } from '@chorus/protocol';
import type { Connect } from '@chorus/worker';

/** The worker transport over the `ws` package (Node 20 has no global WebSocket). */
export const connectWs: Connect = (url, events) =>
  new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { maxPayload: 256 * 1024 * 1024 });
    socket.binaryType = 'nodebuffer';
    let opened = false;
    socket.on('open', () => {
      opened = true;
      resolve({
        send: (frame) => socket.send(frame, { binary: true }),
        close: (code, reason) => socket.close(code, reason === undefined ? undefined : closeReason(reason)),
      });
    });
    socket.on('message', (data) => {
      const frame = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data;
      events.onMessage(frame);
    });
    socket.on('error', (error) => {
      if (!opened) reject(error);
    });
    socket.on('close', (code, reason) => {
      if (opened) events.onClose(code, reason.toString());
    });
  });
