import type { Connect } from '@chorus/worker';
import { closeReason } from '@chorus/protocol';

/**
 * The worker transport over the standard WebSocket (a page or a Web Worker): one binary frame
 * per message, received as ArrayBuffers. It only opens, sends and closes; reconnecting with
 * back-off is the runtime's job (ChorusWorker).
 */
export const connectBrowserWebSocket: Connect = (url, events) =>
  new Promise((resolve, reject) => {
    let socket: WebSocket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      reject(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    socket.binaryType = 'arraybuffer';
    let opened = false;
    socket.onopen = () => {
      opened = true;
      resolve({
        send: (frame) => {
          // A closing socket drops the frame (send would only queue it); the runtime resends nothing.
          if (socket.readyState === WebSocket.OPEN) socket.send(frame as Uint8Array<ArrayBuffer>);
        },
        close: (code, reason) => {
          try {
            socket.close(code, reason === undefined ? undefined : closeReason(reason));
          } catch {
            socket.close();
          }
        },
      });
    };
    socket.onmessage = (event: MessageEvent) => {
      // Text frames are not part of the protocol: hand their bytes on so the parser refuses them.
      const data = event.data instanceof ArrayBuffer ? new Uint8Array(event.data) : new TextEncoder().encode(String(event.data));
      events.onMessage(data);
    };
    // The browser says nothing useful about why a WebSocket failed (on purpose), only that it did.
    socket.onerror = () => {
      if (!opened) reject(new Error(`WebSocket to ${url} failed`));
    };
    socket.onclose = (event: CloseEvent) => {
      if (opened) events.onClose(event.code, event.reason);
      else reject(new Error(`WebSocket to ${url} closed before it opened (${event.code})`));
    };
  });
