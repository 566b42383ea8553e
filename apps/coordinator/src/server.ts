import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { CLOSE_CODES, MAX_FRAME_BYTES, PROTOCOL_VERSION, ProtocolError, parseMessage, type ErrorCode } from '@chorus/protocol';
import { Connection } from './connection.js';
import { MonitorFeed } from './monitor.js';
import type { Coordinator } from './coordinator.js';
import type { Logger } from './logger.js';
import type { ChorusMetrics } from './metrics.js';
import type { WorkerRecord } from './membership.js';

export interface ServerOptions {
  host: string;
  port: number;
  coordinator: Coordinator;
  metrics: ChorusMetrics;
  log: Logger;
  /** Extra HTTP routes (dashboard, browser worker); return true when handled. */
  routes?: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;
  maxFrameBytes?: number;
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

  constructor(options: ServerOptions) {
    this.options = options;
    const maxPayload = options.maxFrameBytes ?? MAX_FRAME_BYTES;
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
      const path = new URL(req.url ?? '/', 'http://localhost').pathname;
      const target = path === '/ws' ? this.wss : path === '/monitor' ? this.monitor.wss : null;
      if (!target) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
        return;
      }
      target.handleUpgrade(req, socket, head, (ws) => target.emit('connection', ws, req));
    });
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
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    if (!coordinator.checkToken(token)) {
      coordinator.refused('bad-token', 'a control request with a wrong or missing token');
      return reply(401, { error: 'wrong or missing token' });
    }
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

  private onConnection(socket: WebSocket, req: IncomingMessage): void {
    const { coordinator, metrics, log } = this.options;
    const conn = new Connection(this.nextConnId++, socket, (n) => metrics.bytesSent.inc(n));
    let worker: WorkerRecord | null = null;
    const remote = req.socket.remoteAddress ?? '?';
    const refuse = (code: ErrorCode, message: string) => {
      coordinator.refused(code, message, worker?.id);
      conn.send({ type: 'error', v: PROTOCOL_VERSION, code, message });
      conn.close(CLOSE_FOR[code], message);
    };
    socket.on('message', (data, isBinary) => {
      const frame = toBytes(data);
      conn.bytesIn += frame.byteLength;
      metrics.bytesReceived.inc(frame.byteLength);
      if (!isBinary) return refuse('malformed', 'text frames are not part of the protocol');
      try {
        const message = parseMessage(
          frame,
          worker ? { paramCount: coordinator.layout.paramCount, bnStatCount: coordinator.layout.bnStatCount, maxShardExamples: coordinator.config.batch } : undefined,
        );
        if (!worker) {
          if (message.type !== 'hello') return refuse('malformed', `the first message must be hello, got '${message.type}'`);
          worker = coordinator.admit(conn, message);
          return;
        }
        if (message.type === 'hello') return refuse('malformed', 'hello sent twice');
        coordinator.receive(worker, message);
      } catch (error) {
        if (error instanceof ProtocolError) return refuse(error.code, error.message);
        log.error('message handling failed', { error: (error as Error).message, worker: worker?.id });
        refuse('internal', 'internal error');
      }
    });
    socket.on('error', (error) => {
      // ws reports oversized frames here (it then closes with 1009).
      if (/max payload/i.test(error.message)) coordinator.refused('too-large', error.message, worker?.id);
      log.warn('socket error', { remote, error: error.message, worker: worker?.id });
    });
    socket.on('close', (code, reason) => {
      if (worker) coordinator.depart(worker, `disconnected (${code}${reason.length ? `: ${reason.toString()}` : ''})`);
    });
  }
}
