/** Pure helpers shared by the page and the Web Worker (no DOM access: unit-tested in Node). */
import { BROWSER_BACKENDS, type BrowserBackendName, type JoinOptions } from './messages.js';

/** The coordinator's WebSocket endpoint for a page it served: same host, ws(s)://host/ws. */
export function webSocketUrl(location: { protocol: string; host: string }): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

/** Reads the join link's query (?token=...&backend=...&selftest&micro-batch=N&threads=N). */
export function parseJoinOptions(location: { protocol: string; host: string; search: string }): JoinOptions {
  const query = new URLSearchParams(location.search);
  const backend = query.get('backend');
  if (backend !== null && !(BROWSER_BACKENDS as readonly string[]).includes(backend)) {
    throw new Error(`unknown backend '${backend}' in the link; choose one of: ${BROWSER_BACKENDS.join(', ')}`);
  }
  const selftest = query.has('selftest');
  const token = query.get('token') ?? '';
  if (!token && !selftest) throw new Error('this link has no join token: open the /join?token=... link the coordinator printed');
  const microBatch = positiveInteger(query, 'micro-batch');
  const threads = positiveInteger(query, 'threads');
  return { url: webSocketUrl(location), token, backend: backend as BrowserBackendName | null, selftest, microBatch, threads };
}

function positiveInteger(query: URLSearchParams, name: string): number | null {
  const raw = query.get(name);
  if (raw === null) return null;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got '${raw}'`);
  return value;
}

/** The user agent for runtime.agent, cut to a length that reads well in logs. */
export function agentString(userAgent: string, max = 160): string {
  const ua = userAgent.trim();
  return ua.length <= max ? ua : `${ua.slice(0, max - 1)}…`;
}
