import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { createDownloadProgress } from './progress.js';

/**
 * 'unreachable': no connection could be made (DNS, refused, timed out);
 * 'interrupted': the transfer broke off; 'http': the server answered with an error status.
 */
export type DownloadFailure = 'unreachable' | 'interrupted' | 'http';

export class DownloadError extends Error {
  readonly failure: DownloadFailure;
  constructor(failure: DownloadFailure, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DownloadError';
    this.failure = failure;
  }
}

const UNREACHABLE_CODES = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'EAI_NONAME',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** fetch wraps the system error in `cause`, sometimes in an AggregateError (one per address). */
function errorCodes(err: unknown, seen = new Set<unknown>()): string[] {
  if (err === null || typeof err !== 'object' || seen.has(err)) return [];
  seen.add(err);
  const codes: string[] = [];
  const { code, cause, errors } = err as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === 'string') codes.push(code);
  codes.push(...errorCodes(cause, seen));
  if (Array.isArray(errors)) for (const e of errors) codes.push(...errorCodes(e, seen));
  return codes;
}

/** The message and its causes' messages, with any system error codes: "fetch failed" alone says nothing. */
function describe(err: unknown): string {
  const messages: string[] = [];
  for (let e: unknown = err; e instanceof Error && messages.length < 4; e = e.cause) {
    if (e.message && !messages.includes(e.message)) messages.push(e.message);
  }
  const codes = [...new Set(errorCodes(err))].filter((c) => !messages.some((m) => m.includes(c)));
  const text = messages.length > 0 ? messages.join(': ') : String(err);
  return codes.length > 0 ? `${text} (${codes.join(', ')})` : text;
}

export interface DownloadOptions {
  fetchImpl?: typeof fetch;
  progress?: boolean;
  /** Label of the progress bar or log lines. */
  label?: string;
  /** Give up when no bytes arrive for this long; covers both connecting and stalled transfers. */
  idleTimeoutMs?: number;
}

/**
 * Streams `url` into a new file at `dest`, hashing as it goes so a large archive is read once.
 * Leaves a partial file on failure: the caller owns `dest`'s directory and removes it.
 */
export async function downloadFile(
  url: string,
  dest: string,
  opts: DownloadOptions = {},
): Promise<{ bytes: number; md5: string }> {
  const fetchImpl = opts.fetchImpl ?? fetch;
  const idleTimeoutMs = opts.idleTimeoutMs ?? 30_000;
  const controller = new AbortController();
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, idleTimeoutMs);
  };

  let received = 0;
  arm();
  try {
    let response: Response;
    try {
      response = await fetchImpl(url, { signal: controller.signal, redirect: 'follow' });
    } catch (err) {
      const codes = errorCodes(err);
      if (timedOut || codes.some((c) => UNREACHABLE_CODES.has(c))) {
        const why = timedOut ? `no answer within ${idleTimeoutMs / 1000} s` : describe(err);
        throw new DownloadError('unreachable', `cannot reach ${url}: ${why}`, { cause: err });
      }
      throw new DownloadError('interrupted', `request to ${url} failed: ${describe(err)}`, { cause: err });
    }
    if (!response.ok || response.body === null) {
      throw new DownloadError('http', `${url} answered HTTP ${response.status} ${response.statusText}`.trim());
    }

    const lengthHeader = response.headers.get('content-length');
    const total = lengthHeader !== null && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
    const progress = createDownloadProgress({
      label: opts.label ?? 'download',
      totalBytes: total,
      enabled: opts.progress ?? true,
    });
    const hash = createHash('md5');
    const file = await open(dest, 'wx');
    const reader = response.body.getReader();
    try {
      for (;;) {
        arm();
        const { done, value } = await reader.read();
        if (done) break;
        hash.update(value);
        await file.write(value);
        received += value.length;
        progress.update(received);
      }
    } catch (err) {
      reader.cancel().catch(() => {});
      const why = timedOut ? `stalled for ${idleTimeoutMs / 1000} s` : describe(err);
      throw new DownloadError('interrupted', `download of ${url} broke off after ${received} bytes: ${why}`, {
        cause: err,
      });
    } finally {
      progress.stop();
      await file.close();
    }
    if (total !== undefined && received !== total) {
      throw new DownloadError('interrupted', `download of ${url} ended after ${received} of ${total} bytes`);
    }
    return { bytes: received, md5: hash.digest('hex') };
  } finally {
    clearTimeout(timer);
  }
}
