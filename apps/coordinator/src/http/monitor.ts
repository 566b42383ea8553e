import { WebSocketServer, type WebSocket } from 'ws';
import type { MonitorMessage } from '@chorus/protocol';
import type { Coordinator } from '../run/coordinator.js';

/**
 * The dashboard's live feed: JSON text frames over a WebSocket. A new watcher first gets the
 * whole history (so a reload shows the run so far), then every step, evaluation and event as
 * it happens, and the status (workers, ETA) once a second. Watching needs no token; nothing
 * in the feed is secret.
 */
export class MonitorFeed {
  readonly wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  private readonly coordinator: Coordinator;
  private readonly unsubscribe: () => void;
  private readonly ticker: ReturnType<typeof setInterval>;

  constructor(coordinator: Coordinator, statusEveryMs = 1000) {
    this.coordinator = coordinator;
    this.wss.on('connection', (socket) => this.onConnection(socket));
    this.unsubscribe = coordinator.subscribe((message) => this.broadcast(message));
    this.ticker = setInterval(() => {
      if (this.wss.clients.size > 0) this.broadcast({ type: 'status', status: coordinator.status() });
    }, statusEveryMs);
  }

  private onConnection(socket: WebSocket): void {
    const { history } = this.coordinator;
    socket.send(
      JSON.stringify({
        type: 'snapshot',
        status: this.coordinator.status(),
        steps: history.steps,
        evals: history.evals,
        events: history.events,
      }),
    );
    // Watchers only listen; anything they send is ignored.
    socket.on('message', () => undefined);
    socket.on('error', () => socket.terminate());
  }

  private broadcast(message: MonitorMessage): void {
    if (this.wss.clients.size === 0) return;
    const text = JSON.stringify(message);
    for (const client of this.wss.clients) {
      // A watcher that cannot keep up is skipped rather than buffered without bound.
      if (client.readyState === client.OPEN && client.bufferedAmount < 4 * 1024 * 1024) client.send(text);
    }
  }

  close(): void {
    clearInterval(this.ticker);
    this.unsubscribe();
    for (const client of this.wss.clients) client.terminate();
    this.wss.close();
  }
}
