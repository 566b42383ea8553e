import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';

/** The certificate (chain) and private key the coordinator serves https and wss with, in PEM. */
export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
  /** The leaf certificate's SHA-256 fingerprint (`AA:BB:...`), pinned by the local workers. */
  fingerprint256: string;
  /** The first DNS name in the leaf's subjectAltName, if any: the name clients must use. */
  dnsName: string | null;
  /** When the leaf certificate expires. */
  validTo: Date;
}

/** A refusal of --tls-cert / --tls-key, worded for the person who started the coordinator. */
export class TlsConfigError extends Error {}

async function readPem(flag: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.code === 'EISDIR' ? 'it is a directory' : e.message;
    throw new TlsConfigError(`cannot read ${flag} ${path}: ${why}`);
  }
}

/** OpenSSL's messages carry a routine prefix (`error:0480006C:PEM routines::no start line`). */
function opensslReason(error: unknown): string {
  return ((error as Error).message ?? String(error)).replace(/^error:[0-9A-F]+:[^:]*:[^:]*:/i, '');
}

/**
 * Reads and checks --tls-cert and --tls-key so that a wrong file is refused at start-up with
 * what is wrong, instead of a stack trace from the first handshake. Undefined when neither is
 * given (plain http); both or neither must be given.
 */
export async function loadTlsFiles(certPath: string | undefined, keyPath: string | undefined): Promise<TlsFiles | undefined> {
  if (certPath === undefined && keyPath === undefined) return undefined;
  if (certPath === undefined || keyPath === undefined) {
    const missing = certPath === undefined ? '--tls-cert' : '--tls-key';
    throw new TlsConfigError(`--tls-cert and --tls-key go together: ${missing} is missing`);
  }
  const [cert, key] = await Promise.all([readPem('--tls-cert', certPath), readPem('--tls-key', keyPath)]);
  // The usual mix-ups (the files swapped, a DER file, a CSR) get named before OpenSSL's words.
  if (!/-----BEGIN CERTIFICATE-----/.test(cert.toString('latin1'))) {
    throw new TlsConfigError(`--tls-cert ${certPath} holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)`);
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key.toString('latin1'))) {
    throw new TlsConfigError(`--tls-key ${keyPath} holds no PEM private key (a -----BEGIN ... PRIVATE KEY----- block)`);
  }
  let leaf: X509Certificate;
  try {
    // The first certificate of the file is the server's own; any others are its chain.
    leaf = new X509Certificate(cert);
  } catch (error) {
    throw new TlsConfigError(`--tls-cert ${certPath} is not a PEM certificate (${opensslReason(error)})`);
  }
  // OpenSSL 3 words a missing passphrase as "interrupted or cancelled".
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(key.toString('latin1'))) {
    throw new TlsConfigError(`--tls-key ${keyPath} is encrypted: give an unencrypted key (openssl pkey -in KEY -out KEY.plain)`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (error) {
    throw new TlsConfigError(`--tls-key ${keyPath} is not a usable PEM private key (${opensslReason(error)})`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsConfigError(`--tls-key ${keyPath} is not the private key of the certificate in --tls-cert ${certPath} (its first certificate, which must be the server's own)`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    throw new TlsConfigError(`--tls-cert ${certPath} and --tls-key ${keyPath} cannot be used: ${opensslReason(error)}`);
  }
  return { cert, key, fingerprint256: leaf.fingerprint256, dnsName: firstDnsName(leaf.subjectAltName), validTo: new Date(leaf.validTo) };
}

/** The first usable DNS name of a subjectAltName string (`DNS:a, IP Address:1.2.3.4, ...`). */
export function firstDnsName(subjectAltName: string | undefined): string | null {
  for (const entry of (subjectAltName ?? '').split(/,\s*/)) {
    const m = /^DNS:(.+)$/.exec(entry.trim());
    // A wildcard names no host one could print.
    if (m && !m[1].includes('*')) return m[1];
  }
  return null;
}

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '']);

/** Whether listening on `host` lets only this machine connect. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\./.test(h);
}

function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

export interface AdvertisedUrls {
  /** http(s)://host:port: the dashboard is at `${base}/`. */
  base: string;
  dashboard: string;
  join: string;
  metrics: string;
  /** ws(s)://host:port/ws for workers on other machines. */
  ws: string;
  /** ws(s)://...:port/ws for the workers this coordinator starts itself (--local-workers). */
  localWs: string;
  worker: string;
}

/**
 * The URLs the coordinator prints. Listening on every address (0.0.0.0, ::), the host shown is
 * the certificate's DNS name when serving TLS (the name a client must use for the certificate
 * to match), else localhost.
 */
export function advertisedUrls(options: { host: string; port: number; token: string; tls?: { dnsName: string | null } }): AdvertisedUrls {
  const { port, token, tls } = options;
  const wildcard = WILDCARD_HOSTS.has(options.host);
  const shown = hostForUrl(wildcard ? (tls?.dnsName ?? 'localhost') : options.host);
  const local = hostForUrl(wildcard ? 'localhost' : options.host);
  const [http, ws] = tls ? ['https', 'wss'] : ['http', 'ws'];
  const base = `${http}://${shown}:${port}`;
  const t = encodeURIComponent(token);
  return {
    base,
    dashboard: `${base}/?token=${t}`,
    join: `${base}/join?token=${t}`,
    metrics: `${base}/metrics`,
    ws: `${ws}://${shown}:${port}/ws`,
    localWs: `${ws}://${local}:${port}/ws`,
    worker: `npx chorus-worker ${ws}://${shown}:${port}/ws --token ${token}`,
  };
}

/**
 * The one line printed when tabs on other machines can reach the coordinator over plain http,
 * where browsers withhold WebGPU and cross-origin isolation; null when it does not apply.
 */
export function insecureRemoteNotice(host: string, tls: boolean): string | null {
  if (tls || isLoopbackHost(host)) return null;
  return (
    'remote browser tabs will not get WebGPU or threaded WASM over plain http (browsers allow them only on https or localhost): ' +
    'start with --tls-cert FILE --tls-key FILE, or serve it behind an https reverse proxy (README: "Remote tabs: TLS")'
  );
}
