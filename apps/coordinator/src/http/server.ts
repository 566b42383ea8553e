import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { CLOSE_CODES, MAX_FRAME_BYTES, PROTOCOL_VERSION, ProtocolError, closeReason, parseMessage, type ErrorCode } from '@chorus/protocol';
import { AuthThrottle, DEFAULT_ADMISSION_LIMITS, setSocketMaxPayload, type AdmissionLimits } from './admission.js';
import { Connection } from './connection.js';
import { MonitorFeed } from './monitor.js';
import type { Coordinator } from '../run/coordinator.js';
import type { Logger } from '../ops/logger.js';
import type { ChorusMetrics } from '../ops/metrics.js';
import type { WorkerRecord } from '../run/membership.js';

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

const CLOSE_FOR: Record<ErrorCode, number> = {
  'bad-token': CLOSE_CODES.badToken,
  'bad-version': CLOSE_CODES.badVersion,
  malformed: CLOSE_CODES.malformed,
  'unknown-type': CLOSE_CODES.malformed,
  'bad-gradient': CLOSE_CODES.badGradient,
  'too-large': CLOSE_CODES.tooLarge,
  timeout: CLOSE_CODES.timeout,
  internal: CLOSE_CODES.malformed,
};

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return new Uint8Array(Buffer.concat(data));
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}

/**
 * HTTP + WebSocket front of the coordinator: parses and validates every frame before the
 * coordinator sees it, refuses bad ones with a reason and closes that connection only.
 */
export class ChorusServer {
  private readonly http: Server | HttpsServer;
  private readonly wss: WebSocketServer;
  private readonly monitor: MonitorFeed;
  private readonly options: ServerOptions;
  private nextConnId = 1;
  private readonly limits: AdmissionLimits;
  private readonly maxFrameBytes: number;
  private readonly authThrottle: AuthThrottle;
  /** Connections on /ws that have not sent a valid hello yet. */
  private unauthenticated = 0;
  private readonly refusalLog = new EveryInterval(1000);

  constructor(options: ServerOptions) {
    this.options = options;
    const maxPayload = options.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.maxFrameBytes = maxPayload;
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
    this.wss = new WebSocketServer({ noServer: true, maxPayload });
    this.wss.on('connection', (socket, req) => this.onConnection(socket, req));
    this.monitor = new MonitorFeed(options.coordinator);
    this.http.on('upgrade', (req, socket, head) => {
      try {
        const path = new URL(req.url ?? '/', 'http://localhost').pathname;
        const target = path === '/ws' ? this.wss : path === '/monitor' ? this.monitor.wss : null;
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
    const open = this.wss.clients.size + this.monitor.wss.clients.size;
    if (open >= limits.maxConnections) return { status: 503, text: 'Service Unavailable', reason: 'too-many-connections', retryAfterS: 5 };
    if (path !== '/ws') return null;
    if (this.unauthenticated >= limits.maxUnauthenticated) {
      return { status: 503, text: 'Service Unavailable', reason: 'too-many-unauthenticated', retryAfterS: 5 };
    }
    const heldMs = this.authThrottle.heldFor(address);
    if (heldMs > 0) return { status: 429, text: 'Too Many Requests', reason: 'auth-hold', retryAfterS: Math.ceil(heldMs / 1000) };
    return null;
  }

  private countConnections(): void {
    const { connections } = this.options.metrics;
    connections.set({ state: 'unauthenticated' }, this.unauthenticated);
    connections.set({ state: 'worker' }, this.wss.clients.size - this.unauthenticated);
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
    for (const client of this.wss.clients) client.close(CLOSE_CODES.shutdown, 'coordinator shutting down');
    this.monitor.close();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
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
        await this.control(req, res);
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

  /** Pause, resume, checkpoint now: POST {action} with `Authorization: Bearer <token>`. */
  private async control(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'POST') return reply(405, { error: 'use POST' });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > 4096) return reply(413, { error: 'request too large' });
      chunks.push(chunk);
    }
    const { coordinator } = this.options;
    const address = req.socket.remoteAddress ?? '?';
    const heldMs = this.authThrottle.heldFor(address);
    if (heldMs > 0) {
      this.options.metrics.connectionsRefused.inc({ reason: 'auth-hold' });
      res.setHeader('retry-after', String(Math.ceil(heldMs / 1000)));
      return reply(429, { error: 'too many wrong tokens from this address; try again later' });
    }
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    if (!coordinator.fleet.checkToken(token)) {
      this.authThrottle.failure(address);
      coordinator.fleet.refused('bad-token', 'a control request with a wrong or missing token');
      return reply(401, { error: 'wrong or missing token' });
    }
    this.authThrottle.success(address);
    let action: unknown;
    try {
      action = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { action?: unknown }).action;
    } catch {
      return reply(400, { error: 'body must be JSON: {"action": "pause" | "resume" | "checkpoint"}' });
    }
    switch (action) {
      case 'pause':
        coordinator.setPaused(true);
        return reply(200, { ok: true, paused: true });
      case 'resume':
        coordinator.setPaused(false);
        return reply(200, { ok: true, paused: false });
      case 'checkpoint': {
        const path = await coordinator.checkpoint();
        return path ? reply(200, { ok: true, path }) : reply(409, { error: 'no --checkpoint-dir was given' });
      }
      default:
        return reply(400, { error: `unknown action ${JSON.stringify(action)}; use pause, resume or checkpoint` });
    }
  }

  /**
   * One worker connection. Nothing in here may throw out of a socket callback: an exception
   * there would reach the process and stop the run for everyone, so each handler catches,
   * logs and refuses that connection only.
   */
  private onConnection(socket: WebSocket, req: IncomingMessage): void {
    const { coordinator, metrics, log } = this.options;
    const { limits } = this;
    const conn = new Connection(this.nextConnId++, socket, (n) => metrics.bytesSent.inc(n));
    let worker: WorkerRecord | null = null;
    let authenticated = false;
    let refusedOnce = false;
    const remote = req.socket.remoteAddress ?? '?';
    this.unauthenticated += 1;
    this.countConnections();
    // Until hello proves the peer knows the token, it may send only a small frame.
    setSocketMaxPayload(socket, limits.preAuthMaxFrameBytes);
    const helloTimer = setTimeout(() => {
      metrics.connectionsRefused.inc({ reason: 'hello-timeout' });
      refuse('timeout', `no valid hello within ${limits.helloTimeoutMs} ms`);
    }, limits.helloTimeoutMs);
    const authenticate = () => {
      authenticated = true;
      clearTimeout(helloTimer);
      this.unauthenticated -= 1;
      setSocketMaxPayload(socket, this.maxFrameBytes);
      this.countConnections();
    };
    const refuse = (code: ErrorCode, message: string) => {
      if (refusedOnce) return;
      refusedOnce = true;
      // Before hello, a flood of refusals must not flood the event log: count them all, show few.
      coordinator.fleet.refused(code, message, worker?.id, { quiet: !authenticated && !this.refusalLog.take() });
      conn.send({ type: 'error', v: PROTOCOL_VERSION, code, message: closeReason(message) });
      conn.close(CLOSE_FOR[code], message);
      // Out of the run now, not when the closing handshake ends: until then it would still be
      // 'ready' and could be handed a share it will never compute.
      if (worker) coordinator.fleet.depart(worker, `refused (${code}): ${message}`, conn);
    };
    const handle = (data: RawData, isBinary: boolean) => {
      const frame = toBytes(data);
      conn.bytesIn += frame.byteLength;
      metrics.bytesReceived.inc(frame.byteLength);
      if (refusedOnce) return; // frames already in flight behind a refusal
      if (!isBinary) return refuse('malformed', 'text frames are not part of the protocol');
      try {
        const message = parseMessage(
          frame,
          authenticated
            ? { paramCount: coordinator.layout.paramCount, bnStatCount: coordinator.layout.bnStatCount, maxShardExamples: coordinator.config.batch, maxFrameBytes: this.maxFrameBytes }
            : { maxFrameBytes: limits.preAuthMaxFrameBytes },
        );
        if (!authenticated) {
          if (message.type !== 'hello') return refuse('malformed', `the first message must be hello, got '${message.type}'`);
          if (!coordinator.fleet.checkToken(message.token)) {
            const heldMs = this.authThrottle.failure(remote);
            if (heldMs > 0) metrics.connectionsRefused.inc({ reason: 'auth-hold' });
            return refuse('bad-token', 'wrong join token');
          }
          this.authThrottle.success(remote);
          authenticate();
          worker = coordinator.fleet.admit(conn, message);
          return;
        }
        if (message.type === 'hello') return refuse('malformed', 'hello sent twice');
        if (!worker) return;
        const refusal = coordinator.fleet.receive(worker, message);
        if (refusal) refuse(refusal.code, refusal.message);
      } catch (error) {
        if (error instanceof ProtocolError) return refuse(error.code, error.message);
        log.error('message handling failed', { error: (error as Error).message, worker: worker?.id });
        refuse('internal', 'internal error');
      }
    };
    socket.on('message', (data, isBinary) => {
      try {
        handle(data, isBinary);
      } catch (error) {
        log.error('worker connection failed', { remote, error: (error as Error).message, worker: worker?.id });
        try {
          socket.terminate();
        } catch {
          // already gone
        }
      }
    });
    socket.on('error', (error) => {
      try {
        // ws reports oversized frames here (it then closes with 1009).
        if (/max payload/i.test(error.message)) {
          if (!authenticated) metrics.connectionsRefused.inc({ reason: 'pre-auth-too-large' });
          coordinator.fleet.refused('too-large', error.message, worker?.id, { quiet: !authenticated && !this.refusalLog.take() });
        }
        if (authenticated) log.warn('socket error', { remote, error: error.message, worker: worker?.id });
      } catch (inner) {
        log.error('socket error handling failed', { error: (inner as Error).message });
      }
    });
    socket.on('close', (code, reason) => {
      try {
        clearTimeout(helloTimer);
        if (!authenticated) this.unauthenticated -= 1;
        this.countConnections();
        if (worker) coordinator.fleet.depart(worker, `disconnected (${code}${reason.length ? `: ${reason.toString()}` : ''})`, conn);
      } catch (error) {
        log.error('closing a worker connection failed', { error: (error as Error).message, worker: worker?.id });
      }
    });
  }
}

/** Answers a WebSocket handshake with a plain HTTP error and closes the socket. */
function rejectUpgrade(socket: Duplex, status: number, text: string, retryAfterS?: number): void {
  const retry = retryAfterS ? `Retry-After: ${retryAfterS}\r\n` : '';
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\n${retry}Content-Length: 0\r\n\r\n`);
}

/** Lets through at most one item per interval and counts what it held back. */
class EveryInterval {
  private last = -Infinity;
  constructor(private readonly intervalMs: number) {}
  take(): boolean {
    const now = Date.now();
    if (now - this.last < this.intervalMs) return false;
    this.last = now;
    return true;
  }
}
