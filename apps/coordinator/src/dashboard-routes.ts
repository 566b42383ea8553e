import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The dashboard's HTTP routes: `/` (the page, also with `?token=...`) and its bundle's files
 * under `/dashboard/` (main.js, the stylesheets, the source map). The bundle is
 * @chorus/dashboard's dist/ folder, found at run time: the coordinator does not depend on it,
 * and answers 503 with the reason when it is not installed or not built.
 *
 * Paths that are not the dashboard's are declined synchronously (the function returns `false`,
 * not a promise), so `dashboardRoutes(req, res) || otherRoutes(req, res)` works.
 */

type Routes = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;

export interface DashboardRoutesOptions {
  /**
   * The bundle folder; by default @chorus/dashboard's dist/, resolved on each request until
   * found (so building it while the coordinator runs is enough).
   */
  dist?: string | (() => string | null);
}

export const DASHBOARD_PREFIX = '/dashboard';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

const COMMON_HEADERS = {
  'x-content-type-options': 'nosniff',
  // The page's URL carries the run's token: never send it anywhere as a referrer.
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
} as const;

/** The page may talk only to its own origin (HTTP and the monitor WebSocket) and not be framed. */
const PAGE_HEADERS = {
  ...COMMON_HEADERS,
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-frame-options': 'DENY',
} as const;

/** Where @chorus/dashboard's bundle is, or null when the package is not installed. */
export function locateDashboardBundle(): string | null {
  try {
    const packageJson = fileURLToPath(import.meta.resolve('@chorus/dashboard/package.json'));
    return join(dirname(packageJson), 'dist');
  } catch {
    return null;
  }
}

/** Whether a path is the dashboard's to answer: `/`, `/index.html`, `/dashboard` and below. */
export function isDashboardPath(pathname: string): boolean {
  return pathname === '/' || pathname === '/index.html' || pathname === DASHBOARD_PREFIX || pathname.startsWith(`${DASHBOARD_PREFIX}/`);
}

/**
 * The bundle-relative file a dashboard path names, or null when it names nothing that may be
 * served (path traversal, encoded separators, hidden files, NUL bytes, folders...).
 */
export function dashboardBundlePath(pathname: string): string | null {
  if (pathname === '/' || pathname === '/index.html' || pathname === DASHBOARD_PREFIX || pathname === `${DASHBOARD_PREFIX}/`) return 'index.html';
  if (!pathname.startsWith(`${DASHBOARD_PREFIX}/`)) return null;
  let rest: string;
  try {
    rest = decodeURIComponent(pathname.slice(DASHBOARD_PREFIX.length + 1));
  } catch {
    return null;
  }
  // One level of plain file names: the bundle has no folders.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(rest) || rest.includes('..')) return null;
  return rest;
}

async function fileInfo(path: string): Promise<{ size: number; mtime: Date } | null> {
  try {
    const s = await stat(path);
    return s.isFile() ? { size: s.size, mtime: s.mtime } : null;
  } catch {
    return null;
  }
}

function plain(res: ServerResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  res.writeHead(status, { ...COMMON_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...extra });
  res.end(`${text}\n`);
}

async function serve(req: IncomingMessage, res: ServerResponse, pathname: string, findDist: () => string | null): Promise<boolean> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    plain(res, 405, 'method not allowed', { allow: 'GET, HEAD' });
    return true;
  }
  const dist = findDist();
  if (dist === null) {
    plain(res, 503, 'the dashboard is not available: @chorus/dashboard is not installed (npm install, then npm run build); /api/status and /metrics still work');
    return true;
  }
  const root = resolve(dist);
  if (!(await fileInfo(join(root, 'index.html')))) {
    plain(res, 503, `the dashboard is not available: it is not built (no ${join(root, 'index.html')}; run npm run build); /api/status and /metrics still work`);
    return true;
  }
  const name = dashboardBundlePath(pathname);
  const file = name === null ? null : resolve(root, name);
  // Belt and braces: whatever the name check let through must still lie inside the bundle.
  const info = file !== null && file.startsWith(root + sep) ? await fileInfo(file) : null;
  if (file === null || info === null) {
    plain(res, 404, 'not found');
    return true;
  }
  const isPage = name === 'index.html';
  res.writeHead(200, {
    ...(isPage ? PAGE_HEADERS : COMMON_HEADERS),
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
}

/** Routes for ChorusServer's `routes` option (see module doc). */
export function createDashboardRoutes(options: DashboardRoutesOptions = {}): Routes {
  const findDist = typeof options.dist === 'string' ? () => options.dist as string : (options.dist ?? locateDashboardBundle);
  return (req, res) => {
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      return false;
    }
    if (!isDashboardPath(pathname)) return false;
    return serve(req, res, pathname, findDist);
  };
}

/** The dashboard's routes, serving @chorus/dashboard's dist/ (see createDashboardRoutes). */
export const dashboardRoutes: Routes = createDashboardRoutes();

/**
 * Several route handlers as one: each is asked in turn until one handles the request. Unlike
 * `a(req, res) || b(req, res)`, this also works when a handler answers with a promise.
 */
export function composeRoutes(...handlers: Routes[]): Routes {
  return async (req, res) => {
    for (const handle of handlers) if (await handle(req, res)) return true;
    return false;
  };
}
