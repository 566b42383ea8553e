import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { MAX_FRAME_BYTES } from '@chorus/protocol';
import { AuthThrottle, DEFAULT_ADMISSION_LIMITS, type AdmissionLimits } from './admission.js';
import { handleControl } from './control.js';
import { MonitorFeed } from './monitor.js';
import { WorkerSockets } from './worker-sockets.js';
import type { Coordinator } from '../run/coordinator.js';
import type { Logger } from '../ops/logger.js';
import type { ChorusMetrics } from '../ops/metrics.js';

export interface ServerOptions {
  host: string;
  port: number;
  coordinator: Coordinator;
  metrics: ChorusMetrics;
  log: Logger;
  /** Extra HTTP routes (dashboard, browser worker); return true when handled. */
  routes?: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;
  maxFrameBytes?: number;
  /** Pre-authentication limits; each missing one takes its default. */
  limits?: Partial<AdmissionLimits>;
  /** Serve https and wss instead of http and ws (PEM certificate chain and private key). */
  tls?: { cert: Buffer | string; key: Buffer | string };
}

/**
 * HTTP + WebSocket front of the coordinator: the API and pages, and the two WebSocket
 * endpoints (workers on /ws, dashboard watchers on /monitor), with the connection limits that
 * apply before a handshake is even accepted.
 */
export class ChorusServer {
  private readonly http: Server | HttpsServer;
  private readonly workers: WorkerSockets;
  private readonly monitor: MonitorFeed;
  private readonly options: ServerOptions;
  private readonly limits: AdmissionLimits;
  private readonly authThrottle: AuthThrottle;

  constructor(options: ServerOptions) {
    this.options = options;
    this.limits = { ...DEFAULT_ADMISSION_LIMITS, ...options.limits };
    this.authThrottle = new AuthThrottle(this.limits);
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.route(req, res);
    this.http = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, handler) : createServer(handler);
    if (options.tls) {
      // A plain ws:// or http:// client, a port scanner or a browser refusing the certificate:
      // that connection fails its handshake and is dropped; nobody else is affected.
      this.http.on('tlsClientError', (error: Error & { code?: string }, socket) => {
        options.log.debug?.('TLS handshake failed', { remote: socket.remoteAddress ?? '?', error: error.code ?? error.message });
        socket.destroy();
      });
    }
    // Two WebSocket endpoints on one server: workers on /ws, dashboard watchers on /monitor.
    this.workers = new WorkerSockets({
      coordinator: options.coordinator,
      metrics: options.metrics,
      log: options.log,
      limits: this.limits,
      maxFrameBytes: options.maxFrameBytes ?? MAX_FRAME_BYTES,
      authThrottle: this.authThrottle,
      counted: () => this.countConnections(),
    });
    this.monitor = new MonitorFeed(options.coordinator);
    this.http.on('upgrade', (req, socket, head) => {
      try {
        const path = new URL(req.url ?? '/', 'http://localhost').pathname;
        const target = path === '/ws' ? this.workers.wss : path === '/monitor' ? this.monitor.wss : null;
        if (!target) return rejectUpgrade(socket, 404, 'Not Found');
        const turnedAway = this.turnAway(path, req.socket.remoteAddress ?? '?');
        if (turnedAway) {
          options.metrics.connectionsRefused.inc({ reason: turnedAway.reason });
          return rejectUpgrade(socket, turnedAway.status, turnedAway.text, turnedAway.retryAfterS);
        }
        target.handleUpgrade(req, socket, head, (ws) => target.emit('connection', ws, req));
      } catch (error) {
        options.log.error('WebSocket upgrade failed', { error: (error as Error).message });
        socket.destroy();
      }
    });
    // Slow senders of HTTP headers (slowloris) hold a socket each; cut them off.
    this.http.headersTimeout = 10_000;
    this.http.requestTimeout = 30_000;
  }

  /** Why a WebSocket handshake is refused before it starts (limits, an address on hold), or null. */
  private turnAway(path: string, address: string): { status: number; text: string; reason: string; retryAfterS?: number } | null {
    const { limits } = this;
    const open = this.workers.wss.clients.size + this.monitor.wss.clients.size;
    if (open >= limits.maxConnections) return { status: 503, text: 'Service Unavailable', reason: 'too-many-connections', retryAfterS: 5 };
    if (path !== '/ws') return null;
    if (this.workers.unauthenticated >= limits.maxUnauthenticated) {
      return { status: 503, text: 'Service Unavailable', reason: 'too-many-unauthenticated', retryAfterS: 5 };
    }
    const heldMs = this.authThrottle.heldFor(address);
    if (heldMs > 0) return { status: 429, text: 'Too Many Requests', reason: 'auth-hold', retryAfterS: Math.ceil(heldMs / 1000) };
    return null;
  }

  private countConnections(): void {
    const { connections } = this.options.metrics;
    const { unauthenticated, wss } = this.workers;
    connections.set({ state: 'unauthenticated' }, unauthenticated);
    connections.set({ state: 'worker' }, wss.clients.size - unauthenticated);
    connections.set({ state: 'monitor' }, this.monitor.wss.clients.size);
  }

  async listen(): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.options.port, this.options.host, () => resolve());
    });
    const address = this.http.address() as AddressInfo;
    return { host: address.address, port: address.port };
  }

  async close(): Promise<void> {
    const closing = this.workers.close();
    this.monitor.close();
    await closing;
    this.http.closeAllConnections?.();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (req.method === 'GET' && url.pathname === '/metrics') {
        res.writeHead(200, { 'content-type': this.options.metrics.contentType });
        res.end(await this.options.metrics.metrics());
        return;
      }
      if (req.method === 'GET' && url.pathname === '/api/status') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(this.options.coordinator.status()));
        return;
      }
      if (url.pathname === '/api/control') {
        await handleControl(req, res, { ...this.options, authThrottle: this.authThrottle });
        return;
      }
      if (req.method === 'GET' && url.pathname === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('ok\n');
        return;
      }
      if (this.options.routes && (await this.options.routes(req, res))) return;
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    } catch (error) {
      this.options.log.error('HTTP handler failed', { error: (error as Error).message });
      if (!res.headersSent) res.writeHead(500);
      res.end();
    }
  }
}

/** Answers a WebSocket handshake with a plain HTTP error and closes the socket. */
function rejectUpgrade(socket: Duplex, status: number, text: string, retryAfterS?: number): void {
  const retry = retryAfterS ? `Retry-After: ${retryAfterS}\r\n` : '';
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\n${retry}Content-Length: 0\r\n\r\n`);
}
