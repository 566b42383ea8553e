import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { composeRoutes, createDashboardRoutes, dashboardBundlePath, locateDashboardBundle } from '../src/http/dashboard-routes.js';

let tmp: string;
let dist: string;
let server: Server;
let base: AddressInfo;

const INDEX = '<!doctype html><title>dashboard</title>';
const MAIN = 'console.log("dashboard");';
const SECRET = 'the secret next to the bundle';

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => boolean | Promise<boolean>): Promise<Server> {
  const s = createServer((req, res) => {
    void (async () => {
      if (!(await handler(req, res))) {
        res.writeHead(404, { 'content-type': 'text/plain', 'x-fallthrough': 'yes' });
        res.end('not mine\n');
      }
    })();
  });
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  return s;
}

/** A raw request: the path goes on the wire exactly as given (fetch would normalise `..`). */
function get(path: string, method = 'GET', port = base.port): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'chorus-dashboard-routes-'));
  dist = join(tmp, 'dist');
  await mkdir(join(dist, 'sub'), { recursive: true });
  await writeFile(join(dist, 'index.html'), INDEX);
  await writeFile(join(dist, 'main.js'), MAIN);
  await writeFile(join(dist, 'main.js.map'), '{"version":3}');
  await writeFile(join(dist, 'dashboard.css'), 'body{}');
  await writeFile(join(dist, 'uPlot.min.css'), '.uplot{}');
  await writeFile(join(dist, '.hidden'), 'hidden');
  await writeFile(join(dist, 'sub', 'inner.js'), 'inner');
  await writeFile(join(tmp, 'secret.txt'), SECRET);
  server = await listen(createDashboardRoutes({ dist }));
  base = server.address() as AddressInfo;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(tmp, { recursive: true, force: true });
});

test('/ serves the page, with or without the token in the query, with a strict policy', async () => {
  for (const path of ['/', '/?token=abc123', '/index.html', '/dashboard', '/dashboard/']) {
    const r = await get(path);
    assert.equal(r.status, 200, path);
    assert.equal(r.headers['content-type'], 'text/html; charset=utf-8', path);
    assert.equal(r.body, INDEX, path);
  }
  const r = await get('/');
  assert.equal(r.headers['referrer-policy'], 'no-referrer');
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
  assert.match(String(r.headers['content-security-policy']), /default-src 'self'/);
  assert.match(String(r.headers['content-security-policy']), /frame-ancestors 'none'/);
  assert.equal(r.headers['cache-control'], 'no-cache');
});

test('the bundle files come with their content types', async () => {
  const expected: [string, string, string | null][] = [
    ['/dashboard/main.js', 'text/javascript; charset=utf-8', MAIN],
    ['/dashboard/dashboard.css', 'text/css; charset=utf-8', 'body{}'],
    ['/dashboard/uPlot.min.css', 'text/css; charset=utf-8', '.uplot{}'],
    ['/dashboard/main.js.map', 'application/json; charset=utf-8', '{"version":3}'],
  ];
  for (const [path, type, body] of expected) {
    const r = await get(path);
    assert.equal(r.status, 200, path);
    assert.equal(r.headers['content-type'], type, path);
    assert.equal(r.headers['x-content-type-options'], 'nosniff', path);
    if (body !== null) assert.equal(r.body, body, path);
  }
  const head = await get('/dashboard/main.js', 'HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], String(Buffer.byteLength(MAIN)));
  assert.equal(head.body, '');
});

test('nothing outside the bundle is served: missing files, folders, hidden files and traversal get 404', async () => {
  const paths = [
    '/dashboard/missing.js',
    '/dashboard/sub/inner.js',
    '/dashboard/sub%2finner.js',
    '/dashboard/sub',
    '/dashboard/.hidden',
    '/dashboard/%2ehidden',
    '/dashboard/../secret.txt',
    '/dashboard/%2e%2e/secret.txt',
    '/dashboard/%2e%2e%2fsecret.txt',
    '/dashboard/..%2fsecret.txt',
    '/dashboard/..%5csecret.txt',
    '/dashboard/main.js%00.css',
    '/dashboard/%E0%A4%A',
    '/dashboard//etc/passwd',
    '/dashboard/%2fetc%2fpasswd',
  ];
  for (const path of paths) {
    const r = await get(path);
    assert.ok(r.status === 404, `${path}: ${r.status}`);
    assert.ok(!r.body.includes(SECRET), path);
    assert.notEqual(r.body, 'inner', path);
  }
  // A raw `..` that leaves /dashboard/ altogether is simply not the dashboard's path.
  const r = await get('/dashboard/../../secret.txt');
  assert.ok(!r.body.includes(SECRET));
});

test('other paths are declined synchronously, so `a || b` composes; other methods get 405', async () => {
  const routes = createDashboardRoutes({ dist });
  const fakeRes = {} as ServerResponse;
  for (const url of ['/join', '/join?token=x', '/metrics', '/api/status', '/api/control', '/monitor', '/favicon.ico', '/dashboardx', '/main.js']) {
    assert.equal(routes({ url, method: 'GET' } as IncomingMessage, fakeRes), false, url);
  }
  for (const path of ['/metrics', '/join', '/main.js']) {
    const r = await get(path);
    assert.equal(r.headers['x-fallthrough'], 'yes', path);
  }
  const post = await get('/', 'POST');
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
});

test('a missing or unbuilt bundle is a 503 that says what to do', async () => {
  const missing = await listen(createDashboardRoutes({ dist: () => null }));
  const empty = join(tmp, 'empty');
  await mkdir(empty);
  const unbuilt = await listen(createDashboardRoutes({ dist: empty }));
  try {
    const a = await get('/', 'GET', (missing.address() as AddressInfo).port);
    assert.equal(a.status, 503);
    assert.match(a.body, /@chorus\/dashboard is not installed/);
    const b = await get('/dashboard/main.js', 'GET', (unbuilt.address() as AddressInfo).port);
    assert.equal(b.status, 503);
    assert.match(b.body, /not built .*npm run build/);
  } finally {
    for (const s of [missing, unbuilt]) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  }
});

test('bundle paths: one level of plain names', () => {
  assert.equal(dashboardBundlePath('/'), 'index.html');
  assert.equal(dashboardBundlePath('/dashboard/main.js'), 'main.js');
  assert.equal(dashboardBundlePath('/dashboard/..'), null);
  assert.equal(dashboardBundlePath('/dashboard/a/b.js'), null);
  assert.equal(dashboardBundlePath('/dashboard/%2e%2e%2fx'), null);
  assert.equal(dashboardBundlePath('/join/page.js'), null);
});

test('the default bundle is @chorus/dashboard’s dist/ in this workspace', () => {
  const found = locateDashboardBundle();
  assert.ok(found !== null && /dashboard[\\/]dist$/.test(found), String(found));
});

test('composeRoutes asks each handler in turn, awaiting promises', async () => {
  const seen: string[] = [];
  const routes = composeRoutes(
    async () => {
      seen.push('a');
      return false;
    },
    () => {
      seen.push('b');
      return true;
    },
    () => {
      seen.push('c');
      return true;
    },
  );
  assert.equal(await routes({} as IncomingMessage, {} as ServerResponse), true);
  assert.deepEqual(seen, ['a', 'b']);
});
