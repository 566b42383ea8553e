import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The browser worker's HTTP routes: `/join` (the page a person opens to join with a browser
 * tab) and the files of its bundle under `/join/` (page.js, worker.js, the tfjs WASM binaries).
 * The bundle is @chorus/browser-worker's dist/ folder, found at run time: the coordinator does
 * not depend on it, and answers 503 with the reason when it is not installed or not built.
 *
 * Every answer carries the headers that make the page cross-origin isolated (so WASM can use
 * threads): COOP same-origin, COEP require-corp, and CORP same-origin on the resources.
 */

export type Routes = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;

export interface BrowserRoutesOptions {
  /**
   * The bundle folder; by default @chorus/browser-worker's dist/, resolved on each request
   * until found (so building it while the coordinator runs is enough).
   */
  dist?: string | (() => string | null);
}

export const JOIN_PREFIX = '/join';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

const ISOLATION_HEADERS = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
  'x-content-type-options': 'nosniff',
} as const;

/** Where @chorus/browser-worker's bundle is, or null when the package is not installed. */
export function locateBrowserBundle(): string | null {
  try {
    const packageJson = fileURLToPath(import.meta.resolve('@chorus/browser-worker/package.json'));
    return join(dirname(packageJson), 'dist');
  } catch {
    return null;
  }
}

function plain(res: ServerResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { ...ISOLATION_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...extra });
  res.end(`${text}\n`);
}

/**
 * The bundle-relative file a /join path names, or null when it names nothing that may be
 * served (path traversal, encoded separators, hidden files, NUL bytes...).
 */
export function bundlePath(pathname: string): string | null {
  if (pathname === JOIN_PREFIX || pathname === `${JOIN_PREFIX}/`) return 'index.html';
  if (!pathname.startsWith(`${JOIN_PREFIX}/`)) return null;
  let rest: string;
  try {
    rest = decodeURIComponent(pathname.slice(JOIN_PREFIX.length + 1));
  } catch {
    return null;
  }
  // One level of plain file names: the bundle has no folders.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(rest) || rest.includes('..')) return null;
  return rest;
}

async function isFile(path: string): Promise<{ size: number; mtime: Date } | null> {
  try {
    const s = await stat(path);
    return s.isFile() ? { size: s.size, mtime: s.mtime } : null;
  } catch {
    return null;
  }
}

/** Routes for ChorusServer's `routes` option (see module doc). */
export function createBrowserRoutes(options: BrowserRoutesOptions = {}): Routes {
  const findDist = typeof options.dist === 'string' ? () => options.dist as string : (options.dist ?? locateBrowserBundle);
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== JOIN_PREFIX && !url.pathname.startsWith(`${JOIN_PREFIX}/`)) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      plain(res, 405, 'method not allowed', { allow: 'GET, HEAD' });
      return true;
    }
    const dist = findDist();
    if (dist === null) {
      plain(res, 503, 'joining from a browser is not available: @chorus/browser-worker is not installed (npm install, then npm run build)');
      return true;
    }
    const root = resolve(dist);
    if (!(await isFile(join(root, 'index.html')))) {
      plain(res, 503, `joining from a browser is not available: the browser worker is not built (no ${join(root, 'index.html')}; run npm run build)`);
      return true;
    }
    const name = bundlePath(url.pathname);
    const file = name === null ? null : resolve(root, name);
    // Belt and braces: whatever the name check let through must still lie inside the bundle.
    const info = file !== null && file.startsWith(root + sep) ? await isFile(file) : null;
    if (file === null || info === null) {
      plain(res, 404, 'not found');
      return true;
    }
    res.writeHead(200, {
      ...ISOLATION_HEADERS,
      'content-type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'content-length': String(info.size),
      'last-modified': info.mtime.toUTCString(),
      // Names are not content-hashed: revalidate, so a rebuilt bundle is picked up.
      'cache-control': 'no-cache',
    });
    if (req.method === 'HEAD') {
      res.end();
      return true;
    }
    await new Promise<void>((done) => {
      const stream = createReadStream(file);
      stream.on('error', () => {
        res.destroy();
        done();
      });
      stream.on('end', () => done());
      stream.pipe(res);
    });
    return true;
  };
}

/** The browser worker's routes, serving @chorus/browser-worker's dist/ (see createBrowserRoutes). */
export const routes: Routes = createBrowserRoutes();
