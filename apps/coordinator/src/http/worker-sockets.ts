import type { IncomingMessage } from 'node:http';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { CLOSE_CODES, PROTOCOL_VERSION, ProtocolError, closeReason, parseMessage, type ErrorCode } from '@chorus/protocol';
import type { Logger } from '../ops/logger.js';
import type { ChorusMetrics } from '../ops/metrics.js';
import type { Coordinator } from '../run/coordinator.js';
import type { WorkerRecord } from '../run/membership.js';
import { AuthThrottle, setSocketMaxPayload, type AdmissionLimits } from './admission.js';
import { Connection } from './connection.js';

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

/** Lets through at most one item per interval. */
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

export interface WorkerSocketsContext {
  coordinator: Coordinator;
  metrics: ChorusMetrics;
  log: Logger;
  limits: AdmissionLimits;
  /** The frame limit once a worker has shown the token. */
  maxFrameBytes: number;
  /** Wrong tokens per address (shared with the control API). */
  authThrottle: AuthThrottle;
  /** Connection counts changed (for the metrics). */
  counted(): void;
}

/**
 * The workers' WebSocket endpoint (/ws): every frame is parsed and validated before the fleet
 * sees it; a bad one is refused with a reason and closes that connection only. Until a valid
 * hello a connection gets a small frame limit and a deadline (admission.ts).
 */
export class WorkerSockets {
  readonly wss: WebSocketServer;
  /** Connections that have not sent a valid hello yet. */
  unauthenticated = 0;
  private readonly context: WorkerSocketsContext;
  private nextConnId = 1;
  private readonly refusalLog = new EveryInterval(1000);

  constructor(context: WorkerSocketsContext) {
    this.context = context;
    this.wss = new WebSocketServer({ noServer: true, maxPayload: context.maxFrameBytes });
    this.wss.on('connection', (socket, req) => this.onConnection(socket, req));
  }

  get limits(): AdmissionLimits {
    return this.context.limits;
  }

  get maxFrameBytes(): number {
    return this.context.maxFrameBytes;
  }

  get authThrottle(): AuthThrottle {
    return this.context.authThrottle;
  }

  /** Tells every worker the coordinator is going away, then stops accepting. */
  async close(): Promise<void> {
    for (const client of this.wss.clients) client.close(CLOSE_CODES.shutdown, 'coordinator shutting down');
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  /**
   * One worker connection. Nothing in here may throw out of a socket callback: an exception
   * there would reach the process and stop the run for everyone, so each handler catches,
   * logs and refuses that connection only.
   */
  private onConnection(socket: WebSocket, req: IncomingMessage): void {
    const { coordinator, metrics, log } = this.context;
    const { limits } = this;
    const conn = new Connection(this.nextConnId++, socket, (n) => metrics.bytesSent.inc(n));
    let worker: WorkerRecord | null = null;
    let authenticated = false;
    let refusedOnce = false;
    const remote = req.socket.remoteAddress ?? '?';
    this.unauthenticated += 1;
    this.context.counted();
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
      this.context.counted();
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
            ? { paramCount: coordinator.layout.paramCount, bnStatCount: coordinator.layout.bnStatCount, maxShardExamples: coordinator.config.batch, maxFrameBytes: this.maxFrameBytes, codec: coordinator.codec.name, ...(coordinator.lowRank ? { lowRank: coordinator.lowRank.plan } : {}) }
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
          // Final for every build (bad-version): an older worker would otherwise be admitted,
          // refused at its first gradient and reconnect for ever.
          const unmet = coordinator.unmetFeature(message.features);
          if (unmet) return refuse('bad-version', unmet);
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
        this.context.counted();
        if (worker) coordinator.fleet.depart(worker, `disconnected (${code}${reason.length ? `: ${reason.toString()}` : ''})`, conn);
      } catch (error) {
        log.error('closing a worker connection failed', { error: (error as Error).message, worker: worker?.id });
      }
    });
  }
}
