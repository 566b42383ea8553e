import { isIP } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import WebSocket from 'ws';
import { closeReason } from '@chorus/protocol';
import type { Connect } from '@chorus/worker';

/** How a wss:// connection decides to trust the coordinator (ws:// ignores all of it). */
export interface WsTlsOptions {
  /**
   * PEM certificates of the CA(s) to trust instead of Node's usual roots (a private CA).
   * NODE_EXTRA_CA_CERTS adds to the usual roots without it.
   */
  ca?: string | Buffer;
  /**
   * Accept exactly the server certificate with this SHA-256 fingerprint (`AA:BB:...`), whoever
   * signed it and whatever names it carries: how a coordinator's own --local-workers trust it.
   */
  certFingerprint?: string;
}

/** The coordinator's WebSocket URL from what a person may paste: ws(s)://, http(s):// or host:port. */
export function workerUrl(raw: string): string {
  const url = /^wss?:\/\//.test(raw) ? raw : raw.startsWith('https://') ? `wss://${raw.slice(8)}` : `ws://${raw.replace(/^http:\/\//, '')}`;
  return url.endsWith('/ws') ? url : `${url.replace(/\/$/, '')}/ws`;
}

/** TLS verification failures, where the fix is to tell the worker which CA to trust. */
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
]);

/** The error a failed connection reports, with what to do about it where that is clear. */
function explain(url: string, error: Error & { code?: string }): Error {
  const code = error.code ?? '';
  let hint = '';
  if (UNTRUSTED.has(code)) hint = "the coordinator's certificate is not signed by a CA trusted here: pass --ca FILE (the CA's certificate) or set NODE_EXTRA_CA_CERTS=FILE";
  else if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') hint = "the host in the URL is not one of the names in the coordinator's certificate: use one of them";
  else if (code === 'CERT_HAS_EXPIRED') hint = "the coordinator's certificate has expired";
  else if (/wrong version number|packet length too long/i.test(error.message)) hint = 'the coordinator does not serve TLS on this port: use ws://';
  else if (url.startsWith('ws://') && (code === 'ECONNRESET' || /socket hang up/i.test(error.message))) hint = 'if the coordinator serves TLS (--tls-cert), use wss://';
  if (!hint) return error;
  return Object.assign(new Error(`${error.message} (${hint})`), { code: error.code, cause: error });
}

/** A TLS socket that accepts only the pinned certificate, checked before any frame is sent. */
function pinnedConnect(fingerprint: string) {
  const want = fingerprint.toUpperCase();
  return (options: ConnectionOptions & { host?: string; path?: string }): TLSSocket => {
    const socket = tlsConnect({
      ...options,
      path: undefined,
      // As ws does: SNI with the host's name, none for an address.
      servername: options.servername || (options.host && !isIP(options.host) ? options.host : ''),
      // The pin below replaces the CA and name checks; nothing is sent before it passes.
      rejectUnauthorized: false,
    });
    socket.once('secureConnect', () => {
      const got = socket.getPeerCertificate().fingerprint256;
      if (got !== want) socket.destroy(new Error(`the coordinator's certificate (SHA-256 ${got ?? 'none'}) is not the pinned one (${want})`));
    });
    return socket;
  };
}

/** The worker transport over the `ws` package (Node 20 has no global WebSocket). */
export function createWsConnect(tls: WsTlsOptions = {}): Connect {
  return (url, events) =>
    new Promise((resolve, reject) => {
      const socket = new WebSocket(url, {
        maxPayload: 256 * 1024 * 1024,
        ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
        ...(tls.certFingerprint && url.startsWith('wss:') ? { createConnection: pinnedConnect(tls.certFingerprint) as never } : {}),
      });
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
        if (!opened) reject(explain(url, error));
      });
      socket.on('close', (code, reason) => {
        if (opened) events.onClose(code, reason.toString());
      });
    });
}

/** The transport with Node's usual trust (its CA roots plus NODE_EXTRA_CA_CERTS). */
export const connectWs: Connect = createWsConnect();
