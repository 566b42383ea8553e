import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { create } from 'tar';
import { CIFAR10, CIFAR10_FILES } from '../src/index.js';
import { createDownloadProgress, ensureCifar10, loadCifar10 } from '../src/node/index.js';
import { CIFAR_DIR } from './support.js';

const RECORDS = 8;

interface TestServer {
  url: string;
  requests: number;
  close(): Promise<void>;
}

async function serve(handler: RequestListener): Promise<TestServer> {
  const server: Server = createServer((req, res) => {
    result.requests++;
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const result: TestServer = {
    url: `http://127.0.0.1:${port}/cifar-10-binary.tar.gz`,
    requests: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return result;
}

/** A port nothing listens on: bind one, then let it go. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('ensureCifar10', () => {
  let work: string;
  let archive: Buffer;
  let md5: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'chorus-data-download-'));
    // A miniature of the official archive: a few real records per file, same layout.
    const source = join(work, 'source');
    await mkdir(join(source, 'cifar-10-batches-bin'), { recursive: true });
    for (const name of CIFAR10_FILES) {
      const bytes = await readFile(join(CIFAR_DIR, name));
      await writeFile(join(source, 'cifar-10-batches-bin', name), bytes.subarray(0, RECORDS * CIFAR10.recordBytes));
    }
    await writeFile(join(source, 'cifar-10-batches-bin', 'batches.meta.txt'), CIFAR10.classNames.join('\n'));
    const file = join(work, 'archive.tar.gz');
    await create({ gzip: true, file, cwd: source }, ['cifar-10-batches-bin']);
    archive = await readFile(file);
    md5 = createHash('md5').update(archive).digest('hex');
  });

  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  /** A fresh cache location whose parent should end up holding only what we expect. */
  async function freshCache(name: string): Promise<{ parent: string; cacheDir: string }> {
    const parent = join(work, name);
    await mkdir(parent);
    return { parent, cacheDir: join(parent, 'cifar-10-batches-bin') };
  }

  const serveArchive: RequestListener = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': archive.length });
    res.end(archive);
  };

  test('downloads, verifies and unpacks into the cache, then reuses it', async () => {
    const server = await serve(serveArchive);
    try {
      const { parent, cacheDir } = await freshCache('ok');
      const dir = await ensureCifar10({ cacheDir, url: server.url, md5, progress: false });
      assert.equal(dir, cacheDir);
      assert.deepEqual(await readdir(parent), ['cifar-10-batches-bin'], 'no temporary files left');
      const data = await loadCifar10(dir);
      assert.equal(data.train.count, 5 * RECORDS);
      assert.equal(data.test.count, RECORDS);
      assert.deepEqual([...data.train.labels.subarray(0, 5)], [6, 9, 9, 4, 1]);
      assert.deepEqual([...data.test.labels.subarray(0, 5)], [3, 8, 8, 0, 6]);

      assert.equal(await ensureCifar10({ cacheDir, url: server.url, md5, progress: false }), cacheDir);
      assert.equal(server.requests, 1, 'the second call uses the cache');
    } finally {
      await server.close();
    }
  });

  test('an md5 mismatch leaves nothing behind', async () => {
    const server = await serve(serveArchive);
    try {
      const { parent, cacheDir } = await freshCache('bad-md5');
      await assert.rejects(
        ensureCifar10({ cacheDir, url: server.url, md5: '0'.repeat(32), progress: false }),
        (err: Error) => err.message.includes(`md5 ${md5}, expected ${'0'.repeat(32)}`) && /--data DIR/.test(err.message),
      );
      assert.deepEqual(await readdir(parent), []);
    } finally {
      await server.close();
    }
  });

  test('a connection dropped halfway leaves nothing behind', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': archive.length });
      res.write(archive.subarray(0, archive.length >> 1), () => setTimeout(() => res.socket?.destroy(), 20));
    });
    try {
      const { parent, cacheDir } = await freshCache('dropped');
      await assert.rejects(ensureCifar10({ cacheDir, url: server.url, md5, progress: false }), (err: Error) => {
        assert.match(err.message, /Downloading CIFAR-10 failed/);
        assert.match(err.message, /--data DIR/);
        return true;
      });
      assert.deepEqual(await readdir(parent), []);
    } finally {
      await server.close();
    }
  });

  test('an archive with a corrupt file leaves nothing behind', async () => {
    const source = join(work, 'corrupt-source');
    await mkdir(join(source, 'cifar-10-batches-bin'), { recursive: true });
    for (const name of CIFAR10_FILES) {
      const bytes = new Uint8Array(2 * CIFAR10.recordBytes);
      if (name === 'data_batch_4.bin') bytes[CIFAR10.recordBytes] = 42;
      await writeFile(join(source, 'cifar-10-batches-bin', name), bytes);
    }
    const file = join(work, 'corrupt.tar.gz');
    await create({ gzip: true, file, cwd: source }, ['cifar-10-batches-bin']);
    const corrupt = await readFile(file);
    const server = await serve((_req, res) => res.end(corrupt));
    try {
      const { parent, cacheDir } = await freshCache('corrupt');
      const corruptMd5 = createHash('md5').update(corrupt).digest('hex');
      await assert.rejects(
        ensureCifar10({ cacheDir, url: server.url, md5: corruptMd5, progress: false }),
        /data_batch_4\.bin.*record 1 has label 42/,
      );
      assert.deepEqual(await readdir(parent), []);
    } finally {
      await server.close();
    }
  });

  test('connection refused tells the user to download it and pass --data DIR', async () => {
    const { parent, cacheDir } = await freshCache('refused');
    const url = `http://127.0.0.1:${await closedPort()}/cifar-10-binary.tar.gz`;
    await assert.rejects(ensureCifar10({ cacheDir, url, md5, progress: false }), (err: Error) => {
      assert.match(err.message, /network is unreachable/);
      assert.match(err.message, /ECONNREFUSED/);
      assert.match(err.message, /pass --data DIR/);
      return true;
    });
    assert.deepEqual(await readdir(parent), []);
  });

  test('a server that never answers times out with the --data DIR advice', async () => {
    const server = await serve(() => {});
    try {
      const { parent, cacheDir } = await freshCache('silent');
      await assert.rejects(
        ensureCifar10({ cacheDir, url: server.url, md5, progress: false, idleTimeoutMs: 300 }),
        /network is unreachable.*no answer within 0\.3 s.*--data DIR/s,
      );
      assert.deepEqual(await readdir(parent), []);
    } finally {
      await server.close();
    }
  });

  test('an HTTP error status is reported', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(404);
      res.end();
    });
    try {
      const { parent, cacheDir } = await freshCache('404');
      await assert.rejects(ensureCifar10({ cacheDir, url: server.url, md5, progress: false }), /HTTP 404.*--data DIR/s);
      assert.deepEqual(await readdir(parent), []);
    } finally {
      await server.close();
    }
  });

  test('an interrupted download (SIGINT) leaves nothing behind', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': archive.length });
      res.write(archive.subarray(0, archive.length >> 1)); // then stall until killed
    });
    const { parent, cacheDir } = await freshCache('interrupted');
    const script = join(work, 'interrupted-child.mts');
    const entry = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'node', 'index.ts');
    await writeFile(
      script,
      `import { ensureCifar10 } from ${JSON.stringify(entry)};\n` +
        `await ensureCifar10(${JSON.stringify({ cacheDir, url: server.url, md5, progress: false })});\n`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: dirname(fileURLToPath(import.meta.url)),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk) => (stderr += chunk));
    try {
      const exited = once(child, 'exit');
      // Wait until the partial archive sits in the temporary folder, then interrupt.
      for (let tries = 0; ; tries++) {
        const temps = await readdir(parent);
        if (temps.length === 1 && (await readdir(join(parent, temps[0]))).length > 0) break;
        assert.ok(tries < 300 && child.exitCode === null, `the child never started downloading: ${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      child.kill('SIGINT');
      const [code, signal] = await exited;
      assert.equal(signal ?? code, 'SIGINT');
      assert.deepEqual(await readdir(parent), []);
    } finally {
      child.kill('SIGKILL');
      await server.close();
    }
  });

  test('an empty cache directory is filled', async () => {
    const server = await serve(serveArchive);
    try {
      const { cacheDir } = await freshCache('empty-cache');
      await mkdir(cacheDir);
      assert.equal(await ensureCifar10({ cacheDir, url: server.url, md5, progress: false }), cacheDir);
      assert.equal((await loadCifar10(cacheDir)).test.count, RECORDS);
    } finally {
      await server.close();
    }
  });

  test('--data must hold the six files', async () => {
    assert.equal(await ensureCifar10({ data: CIFAR_DIR }), CIFAR_DIR);
    const incomplete = join(work, 'incomplete');
    await mkdir(incomplete);
    await writeFile(join(incomplete, 'data_batch_1.bin'), new Uint8Array(CIFAR10.recordBytes));
    await assert.rejects(ensureCifar10({ data: incomplete }), (err: Error) => {
      assert.match(err.message, /data_batch_2\.bin is missing/);
      assert.match(err.message, /test_batch\.bin is missing/);
      assert.doesNotMatch(err.message, /data_batch_1\.bin/);
      return true;
    });
  });

  test('an incomplete cache directory is reported, not overwritten', async () => {
    const { cacheDir } = await freshCache('partial-cache');
    await mkdir(cacheDir);
    await writeFile(join(cacheDir, 'data_batch_1.bin'), new Uint8Array(10));
    await assert.rejects(
      ensureCifar10({ cacheDir, url: 'http://127.0.0.1:9/unused', progress: false }),
      /not a complete CIFAR-10 directory.*data_batch_1\.bin has 10 bytes/,
    );
    assert.deepEqual(await readdir(cacheDir), ['data_batch_1.bin']);
  });
});

test('without a terminal, progress is one line per 10%', () => {
  const lines: string[] = [];
  const stream = { isTTY: false, write: (s: string) => lines.push(s) } as unknown as NodeJS.WriteStream;
  const progress = createDownloadProgress({ label: 'CIFAR-10', totalBytes: 1000, enabled: true, stream });
  for (let received = 7; received <= 1000; received += 7) progress.update(received);
  progress.update(1000);
  progress.stop();
  assert.equal(lines.length, 11);
  assert.match(lines[0], /^CIFAR-10: 0% /);
  assert.match(lines[10], /^CIFAR-10: 100% /);
});
