import type { WebSocket } from 'ws';

/**
 * Limits on what a peer that has not proved it knows the token can make the coordinator do.
 * The port is reachable by anyone who can route to it, so before a valid hello a connection
 * gets little memory, little time and no training state.
 */
export interface AdmissionLimits {
  /** Close a connection that has not sent a valid hello within this many milliseconds. */
  helloTimeoutMs: number;
  /** Largest frame accepted before hello, in bytes (after hello: the protocol's frame limit). */
  preAuthMaxFrameBytes: number;
  /** WebSocket connections that have not sent a valid hello yet, at once. */
  maxUnauthenticated: number;
  /** WebSocket connections of any kind (workers, pending, dashboards), at once. */
  maxConnections: number;
  /** Wrong tokens from one address before that address is put on hold; 0 turns this off. */
  authFailures: number;
  /** First hold of an address, in milliseconds; each further hold doubles, up to 5 minutes. */
  authHoldMs: number;
}

/**
 * The defaults. The largest hello the protocol accepts is about 14 KiB (every text field at its
 * limit in 3-byte characters; the admission test builds it), so 16 KiB refuses nothing honest.
 */
export const DEFAULT_ADMISSION_LIMITS: AdmissionLimits = {
  helloTimeoutMs: 5_000,
  preAuthMaxFrameBytes: 16 * 1024,
  maxUnauthenticated: 64,
  maxConnections: 1024,
  authFailures: 10,
  authHoldMs: 1_000,
};

export const MAX_AUTH_HOLD_MS = 5 * 60_000;

interface AddressRecord {
  failures: number;
  holds: number;
  holdUntil: number;
  lastSeen: number;
}

/**
 * Slows down guessing: after `authFailures` wrong tokens from one address, refuses that address
 * for a hold that doubles each time (1 s, 2 s, 4 s, ... 5 min). A correct token clears the
 * record. Behind a reverse proxy every peer has the proxy's address, so there a guesser holds
 * everyone up: such setups should rate-limit at the proxy and pass `--auth-failures 0`.
 */
export class AuthThrottle {
  private readonly records = new Map<string, AddressRecord>();
  private readonly limits: Pick<AdmissionLimits, 'authFailures' | 'authHoldMs'>;
  private readonly now: () => number;
  /** Addresses remembered at most; the oldest are forgotten first, so memory stays bounded. */
  private readonly maxAddresses: number;

  constructor(limits: Pick<AdmissionLimits, 'authFailures' | 'authHoldMs'>, now: () => number = Date.now, maxAddresses = 10_000) {
    this.limits = limits;
    this.now = now;
    this.maxAddresses = maxAddresses;
  }

  /** Milliseconds until `address` may try again; 0 when it may now. */
  heldFor(address: string): number {
    const record = this.records.get(address);
    return record ? Math.max(0, record.holdUntil - this.now()) : 0;
  }

  /** A wrong token from `address`; returns the hold it now has (0: none yet). */
  failure(address: string): number {
    if (this.limits.authFailures <= 0) return 0;
    const now = this.now();
    let record = this.records.get(address);
    if (record) this.records.delete(address); // re-inserted below: Map order is least recent first
    record ??= { failures: 0, holds: 0, holdUntil: 0, lastSeen: now };
    record.failures += 1;
    record.lastSeen = now;
    if (record.failures >= this.limits.authFailures) {
      record.failures = 0;
      record.holdUntil = now + Math.min(MAX_AUTH_HOLD_MS, this.limits.authHoldMs * 2 ** record.holds);
      record.holds += 1;
    }
    this.records.set(address, record);
    while (this.records.size > this.maxAddresses) this.records.delete(this.records.keys().next().value!);
    return Math.max(0, record.holdUntil - now);
  }

  /** A correct token: the address starts afresh. */
  success(address: string): void {
    this.records.delete(address);
  }

  get size(): number {
    return this.records.size;
  }
}

/**
 * Changes the largest frame `ws` accepts on one open socket. `ws` takes `maxPayload` per server,
 * not per socket, and checks it against each frame's declared length before buffering, which is
 * the check we want with a smaller bound until hello. It keeps the bound on the socket's
 * receiver; returns false when this `ws` version keeps it elsewhere (the test of the pre-hello
 * limit then fails, and the server still has its own byte check after buffering).
 */
export function setSocketMaxPayload(socket: WebSocket, bytes: number): boolean {
  const receiver = (socket as unknown as { _receiver?: { _maxPayload?: unknown } })._receiver;
  if (!receiver || typeof receiver._maxPayload !== 'number') return false;
  receiver._maxPayload = bytes;
  return true;
}
