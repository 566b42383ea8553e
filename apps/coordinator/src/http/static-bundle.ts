import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Serving a browser bundle (a package's dist/ folder, found at run time) over HTTP: the
 * pieces the browser worker's and the dashboard's routes share. A bundle is one level of
 * plain file names; anything else (traversal, encoded separators, hidden files) is a 404.
 */
export type Routes = (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>;

export interface BundleRoutesSpec {
  /** The package whose dist/ folder is served, e.g. '@chorus/dashboard'. */
  packageName: string;
  /** What the user loses when it is missing, for the 503 text. */
  feature: string;
  /** Said after the 503 text (what still works). */
  missingHint?: string;
  /**
   * The bundle file a path names: undefined when the path is not this bundle's (the request
   * is declined, synchronously), null when it is but names nothing servable (404).
   */
  fileFor(pathname: string): string | null | undefined;
  /** Headers on every answer, and extra ones per served file. */
  headers: Record<string, string>;
  fileHeaders?(file: string): Record<string, string>;
  /** The bundle folder; by default the package's dist/, looked up on each request until found. */
  dist?: string | (() => string | null);
}

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

/** Where a package's dist/ folder is, or null when the package is not installed. */
export function locateBundle(packageName: string): string | null {
  try {
    return join(dirname(fileURLToPath(import.meta.resolve(`${packageName}/package.json`))), 'dist');
  } catch {
    return null;
  }
}

/** The file a path below `prefix/` names, or null unless it is one plain file name. */
export function plainFileBelow(prefix: string, pathname: string): string | null {
  if (!pathname.startsWith(`${prefix}/`)) return null;
  let rest: string;
  try {
    rest = decodeURIComponent(pathname.slice(prefix.length + 1));
  } catch {
    return null;
  }
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

export function createBundleRoutes(spec: BundleRoutesSpec): Routes {
  const findDist =
    typeof spec.dist === 'string' ? () => spec.dist as string : (spec.dist ?? (() => locateBundle(spec.packageName)));
  const plain = (res: ServerResponse, status: number, text: string, extra: Record<string, string> = {}) => {
    res.writeHead(status, { ...spec.headers, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...extra });
    res.end(`${text}\n`);
  };
  const serve = async (req: IncomingMessage, res: ServerResponse, name: string | null): Promise<boolean> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      plain(res, 405, 'method not allowed', { allow: 'GET, HEAD' });
      return true;
    }
    const hint = spec.missingHint ? `; ${spec.missingHint}` : '';
    const dist = findDist();
    if (dist === null) {
      plain(res, 503, `${spec.feature} is not available: ${spec.packageName} is not installed (npm install, then npm run build)${hint}`);
      return true;
    }
    const root = resolve(dist);
    if (!(await fileInfo(join(root, 'index.html')))) {
      plain(res, 503, `${spec.feature} is not available: it is not built (no ${join(root, 'index.html')}; run npm run build)${hint}`);
      return true;
    }
    const file = name === null ? null : resolve(root, name);
    // Belt and braces: whatever the name check let through must still lie inside the bundle.
    const info = file !== null && file.startsWith(root + sep) ? await fileInfo(file) : null;
    if (file === null || name === null || info === null) {
      plain(res, 404, 'not found');
      return true;
    }
    res.writeHead(200, {
      ...spec.headers,
      ...spec.fileHeaders?.(name),
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
  return (req, res) => {
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      return false;
    }
    const name = spec.fileFor(pathname);
    if (name === undefined) return false;
    return serve(req, res, name);
  };
}

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
