import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundlePath, createBrowserRoutes, locateBrowserBundle, type Routes } from '../src/http/browser-routes.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A raw request: unlike fetch, the path goes out exactly as written (no `..` normalisation). */
function get(port: number, path: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The routes behind a server that answers 404 for whatever they do not handle (as ChorusServer does). */
async function serve(routes: Routes): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    void (async () => {
      if (await routes(req, res)) return;
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('server 404\n');
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

const close = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()));

/** A fake bundle next to a secret that must never be served. */
async function fakeBundle(): Promise<{ root: string; dist: string }> {
  const root = await mkdtemp(join(tmpdir(), 'chorus-routes-'));
  const dist = join(root, 'dist');
  await mkdir(join(dist, 'sub'), { recursive: true });
  await writeFile(join(root, 'secret.txt'), 'SECRET');
  await writeFile(join(dist, 'index.html'), '<!doctype html><title>join</title>');
  await writeFile(join(dist, 'page.js'), 'console.log("page")');
  await writeFile(join(dist, 'worker.js'), 'console.log("worker")');
  await writeFile(join(dist, 'worker.js.map'), '{}');
  await writeFile(join(dist, 'tfjs-backend-wasm-simd.wasm'), new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]));
  await writeFile(join(dist, '.hidden'), 'hidden');
  await writeFile(join(dist, 'sub', 'nested.js'), 'nested');
  return { root, dist };
}

function assertIsolation(reply: Reply, path: string): void {
  assert.equal(reply.headers['cross-origin-opener-policy'], 'same-origin', `COOP on ${path}`);
  assert.equal(reply.headers['cross-origin-embedder-policy'], 'require-corp', `COEP on ${path}`);
  assert.equal(reply.headers['cross-origin-resource-policy'], 'same-origin', `CORP on ${path}`);
}

test('/join serves the page and the bundle with cross-origin isolation headers and the right content types', async () => {
  const { root, dist } = await fakeBundle();
  const { server, port } = await serve(createBrowserRoutes({ dist }));
  try {
    for (const path of ['/join', '/join?token=abc', '/join/', '/join/index.html']) {
      const reply = await get(port, path);
      assert.equal(reply.status, 200, path);
      assert.equal(reply.headers['content-type'], 'text/html; charset=utf-8', path);
      assert.match(reply.body, /<title>join<\/title>/);
      assertIsolation(reply, path);
    }
    const expected: [string, string][] = [
      ['/join/page.js', 'text/javascript; charset=utf-8'],
      ['/join/worker.js', 'text/javascript; charset=utf-8'],
      ['/join/worker.js.map', 'application/json; charset=utf-8'],
      ['/join/tfjs-backend-wasm-simd.wasm', 'application/wasm'],
    ];
    for (const [path, type] of expected) {
      const reply = await get(port, path);
      assert.equal(reply.status, 200, path);
      assert.equal(reply.headers['content-type'], type, path);
      assert.equal(reply.headers['x-content-type-options'], 'nosniff');
      assertIsolation(reply, path);
    }
    const wasm = await get(port, '/join/tfjs-backend-wasm-simd.wasm');
    assert.equal(wasm.body, '\0asm\x01\0\0\0');
    assert.equal(wasm.headers['content-length'], '8');

    const head = await get(port, '/join/page.js', 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.equal(head.headers['content-length'], String('console.log("page")'.length));

    const post = await get(port, '/join', 'POST');
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
  } finally {
    await close(server);
    await rm(root, { recursive: true, force: true });
  }
});

test('paths outside the bundle are 404s, and no path escapes it', async () => {
  const { root, dist } = await fakeBundle();
  const { server, port } = await serve(createBrowserRoutes({ dist }));
  try {
    // Not under /join: left to the server (its own 404).
    for (const path of ['/', '/joinx', '/join.html', '/page.js', '/secret.txt']) {
      const reply = await get(port, path);
      assert.equal(reply.status, 404, path);
      assert.equal(reply.body, 'server 404\n', path);
    }
    // Under /join but not a file of the bundle: the routes' 404, still with the headers.
    const outside = [
      '/join/missing.js',
      '/join/sub/nested.js',
      '/join/sub',
      '/join/.hidden',
      '/join/../secret.txt',
      '/join/..%2fsecret.txt',
      '/join/%2e%2e%2fsecret.txt',
      '/join/%2e%2e/secret.txt',
      '/join/..%5csecret.txt',
      '/join/%2fetc%2fpasswd',
      '/join/%00page.js',
      '/join/page.js%00',
      '/join/%E0%A4%A',
      '/join//etc/passwd',
    ];
    for (const path of outside) {
      const reply = await get(port, path);
      assert.ok(reply.status === 404, `${path}: ${reply.status}`);
      assert.ok(!reply.body.includes('SECRET') && !reply.body.includes('root:'), path);
    }
    const missing = await get(port, '/join/missing.js');
    assertIsolation(missing, '/join/missing.js');
  } finally {
    await close(server);
    await rm(root, { recursive: true, force: true });
  }
});

test('bundlePath accepts plain file names only', () => {
  assert.equal(bundlePath('/join'), 'index.html');
  assert.equal(bundlePath('/join/'), 'index.html');
  assert.equal(bundlePath('/join/worker.js'), 'worker.js');
  assert.equal(bundlePath('/join/tfjs-backend-wasm-threaded-simd.wasm'), 'tfjs-backend-wasm-threaded-simd.wasm');
  for (const bad of ['/join/..', '/join/a/b.js', '/join/..%2fx', '/join/.env', '/join/%zz', '/other/page.js', '/join/a..b']) {
    assert.equal(bundlePath(bad), null, bad);
  }
});

test('/join answers 503 with the reason when the bundle is missing', async () => {
  const root = await mkdtemp(join(tmpdir(), 'chorus-routes-empty-'));
  const notBuilt = await serve(createBrowserRoutes({ dist: join(root, 'dist') }));
  const notInstalled = await serve(createBrowserRoutes({ dist: () => null }));
  try {
    const a = await get(notBuilt.port, '/join?token=x');
    assert.equal(a.status, 503);
    assert.match(a.body, /not built/);
    assert.equal(a.headers['content-type'], 'text/plain; charset=utf-8');
    const b = await get(notInstalled.port, '/join/page.js');
    assert.equal(b.status, 503);
    assert.match(b.body, /@chorus\/browser-worker is not installed/);
    // Other paths are still the server's.
    assert.equal((await get(notInstalled.port, '/metrics')).body, 'server 404\n');
  } finally {
    await close(notBuilt.server);
    await close(notInstalled.server);
    await rm(root, { recursive: true, force: true });
  }
});

test('the default routes find @chorus/browser-worker through the package resolver', async () => {
  const dist = locateBrowserBundle();
  assert.ok(dist !== null, '@chorus/browser-worker is installed in this workspace');
  assert.match(dist, /browser-worker[\\/]dist$/);
  // Built or not (the coordinator does not depend on it), /join answers with the page or a 503.
  const { server, port } = await serve(createBrowserRoutes());
  try {
    const reply = await get(port, '/join');
    if (existsSync(join(dist, 'index.html'))) assert.equal(reply.status, 200);
    else assert.equal(reply.status, 503);
    assertIsolation(reply, '/join');
  } finally {
    await close(server);
  }
});
