import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { createWsConnect } from '@chorus/node-worker';
import { launchChromium, skipBrowserTests } from './browser-support.js';
import { shownStep } from './dashboard-support.js';
import { Proc, coordinatorCli, cifarDir, startCoordinator, startWorker, waitFor, type CoordinatorProc } from './support.js';

/**
 * The coordinator serving https and wss itself (--tls-cert/--tls-key) with a certificate made
 * here, at test time: a private CA and a server certificate it signed for 127.0.0.1 and
 * localhost, so the Node worker's --ca is exercised for real (nothing turns verification off).
 */
const openssl = '/usr/bin/openssl';
const skip = existsSync(openssl) || process.env.CI ? false : `no ${openssl}`;

let dir = '';
let cert = '';
let key = '';
let caFile = '';
let ca: Buffer = Buffer.alloc(0);

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'chorus-tls-'));
  const run = (...args: string[]) => execFileSync(openssl, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run('req', '-x509', ...ec, '-days', '2', '-subj', '/CN=Chorus test CA', '-keyout', 'ca.key', '-out', 'ca.pem',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  run('req', ...ec, '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr');
  await writeFile(join(dir, 'server.ext'), [
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
  ].join('\n'));
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'server.ext', '-out', 'server.pem');
  cert = join(dir, 'server.pem');
  key = join(dir, 'server.key');
  caFile = join(dir, 'ca.pem');
  ca = await readFile(caFile);
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const tinyRun = (batch: number, steps: number, extra: string[] = []) => [
  '--preset', 'tiny', '--batch', String(batch), '--bn-group', '4', '--steps', String(steps), '--eval-examples', '16', '--lr', '0.1', '--seed', '3', ...extra,
];
const tlsArgs = () => ['--tls-cert', cert, '--tls-key', key];

/** Whether a plain ws:// connection to the port opens; resolves with how it ended. */
function plainWsAttempt(port: number): Promise<{ opened: boolean; error: string | null }> {
  return new Promise((resolve) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, { handshakeTimeout: 10_000 });
    socket.on('open', () => {
      socket.terminate();
      resolve({ opened: true, error: null });
    });
    socket.on('error', (error) => resolve({ opened: false, error: error.message }));
  });
}

/** The exit code, failing with the process's output if it has not exited within `ms`. */
async function exitWithin(proc: Proc, ms: number): Promise<number | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)));
  const code = await Promise.race([proc.exited, late]).finally(() => clearTimeout(timer));
  if (code === 'late') throw new Error(`still running after ${ms} ms:\n${proc.output.slice(-4000)}`);
  return code;
}

async function stopAll(c: CoordinatorProc | undefined, ...procs: (Proc | undefined)[]): Promise<void> {
  await Promise.all(procs.map((p) => p?.kill()));
  await c?.proc.kill();
}

test('a Node worker joins over wss with --ca and trains; the banner prints https and wss links', { skip, timeout: 180_000 }, async () => {
  let c: CoordinatorProc | undefined;
  let worker: Proc | undefined;
  try {
    c = await startCoordinator([...tinyRun(16, 6), ...tlsArgs()], { ca });
    const p = c.port;
    assert.match(c.proc.output, new RegExp(`dashboard:  https://127\\.0\\.0\\.1:${p}/\\?token=`));
    assert.match(c.proc.output, new RegExp(`join \\(tab\\): https://127\\.0\\.0\\.1:${p}/join\\?token=`));
    assert.match(c.proc.output, new RegExp(`metrics:    https://127\\.0\\.0\\.1:${p}/metrics`));
    assert.match(c.proc.output, new RegExp(`worker:     npx chorus-worker wss://127\\.0\\.0\\.1:${p}/ws --token ${c.token}`));
    assert.equal(c.url, `wss://127.0.0.1:${p}/ws`);
    // On 127.0.0.1 only this machine's tabs connect, and localhost is a secure origin anyway.
    assert.doesNotMatch(c.proc.output, /remote browser tabs/);

    worker = startWorker(c.url, c.token, ['--ca', caFile, '--name', 'tls-worker']);
    const code = await exitWithin(c.proc, 150_000);
    assert.equal(code, 0, c.proc.output);
    assert.match(worker.output, /joined as w\d+/);
    assert.match(c.proc.output, /worker w\d+ joined \(node, wasm/);
    assert.match(c.proc.output, /training finished at step 6/);
  } finally {
    await stopAll(c, worker);
  }
});

test('the coordinator\'s own --local-workers reach it over wss (they pin its certificate)', { skip, timeout: 180_000 }, async () => {
  let c: CoordinatorProc | undefined;
  try {
    c = await startCoordinator([...tinyRun(8, 3), ...tlsArgs(), '--local-workers', '1', '--worker-backend', 'wasm'], { ca });
    assert.equal(await exitWithin(c.proc, 150_000), 0, c.proc.output);
    assert.match(c.proc.output, /joined as w\d+ name=local-1 /);
    assert.match(c.proc.output, /training finished at step 3/);
  } finally {
    await stopAll(c);
  }
});

test('plain ws and http are refused on the TLS port, and so is an untrusted or unpinned certificate; the coordinator stays up', { skip, timeout: 120_000 }, async () => {
  let c: CoordinatorProc | undefined;
  let untrusted: Proc | undefined;
  try {
    c = await startCoordinator([...tinyRun(16, 1000), ...tlsArgs()], { ca, env: { CHORUS_LOG: 'debug' } });
    const { port } = c;

    // A plain ws:// client: its HTTP upgrade is not a TLS handshake, so the socket is dropped.
    for (let i = 0; i < 3; i++) {
      const attempt = await plainWsAttempt(port);
      assert.equal(attempt.opened, false);
      assert.match(attempt.error ?? '', /socket hang up|ECONNRESET/);
    }
    await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
    // Each failed handshake is a debug line, not a warning or a crash.
    await waitFor('the debug line of a failed handshake', () => /debug TLS handshake failed remote=127\.0\.0\.1/.test(c!.proc.output), 10_000);
    assert.doesNotMatch(c.proc.output, /\n\s+at /, 'no stack trace');

    // The Node transport: without --ca the certificate is not trusted, and the error says what to do.
    const noop = { onMessage() {}, onClose() {} };
    await assert.rejects(createWsConnect()(c.url, noop), (error: Error) => {
      assert.match(error.message, /unable to verify the first certificate \(.*pass --ca FILE .*NODE_EXTRA_CA_CERTS=FILE/);
      return true;
    });
    // A ws:// URL to the TLS port: the hint says wss://.
    await assert.rejects(createWsConnect({ ca })(`ws://127.0.0.1:${port}/ws`, noop), /use wss:\/\//);
    // A pinned fingerprint: the right one connects without any CA, a wrong one is refused.
    const fingerprint = new X509Certificate(await readFile(cert)).fingerprint256;
    const pinned = await createWsConnect({ certFingerprint: fingerprint })(c.url, noop);
    pinned.close(1000, 'bye');
    const wrong = fingerprint.replace(/^../, fingerprint.startsWith('00') ? '11' : '00');
    await assert.rejects(createWsConnect({ certFingerprint: wrong })(c.url, noop), /is not the pinned one/);
    // With the CA it connects.
    const trusted = await createWsConnect({ ca })(c.url, noop);
    trusted.close(1000, 'bye');

    // The worker CLI without --ca keeps retrying, and says how to fix it.
    untrusted = startWorker(c.url, c.token, ['--name', 'no-ca']);
    await waitFor('the untrusted worker to explain', () => /cannot reach wss:.*pass --ca FILE/.test(untrusted!.output), 60_000);
    await untrusted.kill();

    // Still serving: status over https, and a trusted client connects.
    const status = await c.status();
    assert.equal(typeof status.step, 'number');
    assert.equal(c.proc.child.exitCode, null);
  } finally {
    await stopAll(c, untrusted);
  }
});

test('--ca that cannot be read, and wrong --tls-cert/--tls-key, are refused at start-up in one line', { skip, timeout: 120_000 }, async () => {
  const procs: Proc[] = [];
  const run = async (proc: Proc) => {
    procs.push(proc);
    const code = await exitWithin(proc, 60_000);
    assert.equal(code, 1, proc.output);
    assert.doesNotMatch(proc.output, /\n\s+at /, `no stack trace:\n${proc.output}`);
    return proc.output.trim();
  };
  const coordinator = (...args: string[]) => new Proc([coordinatorCli, '--host', '127.0.0.1', '--port', '0', '--data', cifarDir, ...args]);
  try {
    assert.equal(await run(coordinator('--tls-cert', cert)), 'error: --tls-cert and --tls-key go together: --tls-key is missing');
    assert.equal(await run(coordinator('--tls-key', key)), 'error: --tls-cert and --tls-key go together: --tls-cert is missing');
    assert.equal(await run(coordinator('--tls-cert', join(dir, 'nope.pem'), '--tls-key', key)), `error: cannot read --tls-cert ${join(dir, 'nope.pem')}: no such file`);
    assert.match(await run(coordinator('--tls-cert', key, '--tls-key', cert)), /^error: --tls-cert \S+ holds no PEM certificate/);
    assert.match(await run(coordinator('--tls-cert', cert, '--tls-key', join(dir, 'ca.key'))), /^error: --tls-key \S+ca\.key is not the private key of the certificate in --tls-cert/);
    const badCa = startWorker('wss://127.0.0.1:1/ws', 't', ['--ca', join(dir, 'missing-ca.pem')]);
    // The worker logs as the coordinator does: `<time> error <message> name=<name>`, one line.
    const workerError = (out: string, message: string) => assert.ok(!out.includes('\n') && out.includes(` error ${message} name=`), out);
    workerError(await run(badCa), `cannot read --ca ${join(dir, 'missing-ca.pem')}: no such file`);
    workerError(await run(startWorker('wss://127.0.0.1:1/ws', 't', ['--ca', key])), `--ca ${key} is not a PEM certificate`);
  } finally {
    await Promise.all(procs.map((p) => p.kill()));
  }
});

test('Chromium opens the https join link: a secure, cross-origin isolated tab with WebGPU trains; the dashboard is live over wss', { skip: skip || skipBrowserTests, timeout: 240_000 }, async (t) => {
  let c: CoordinatorProc | undefined;
  let chromium: Awaited<ReturnType<typeof launchChromium>> | undefined;
  try {
    c = await startCoordinator([...tinyRun(8, 400), ...tlsArgs()], { ca });
    const joinLink = /join \(tab\): (\S+)/.exec(c.proc.output)![1];
    assert.match(joinLink, /^https:\/\/127\.0\.0\.1:\d+\/join\?token=/);
    // Chromium does not know the test CA: it is told to accept the certificate.
    chromium = await launchChromium({ ignoreHTTPSErrors: true });
    const tab = await chromium.open(joinLink);
    const origin = (await tab.page.evaluate(
      '({ secure: window.isSecureContext, isolated: window.crossOriginIsolated, gpu: typeof navigator.gpu, protocol: location.protocol })',
    )) as { secure: boolean; isolated: boolean; gpu: string; protocol: string };
    assert.deepEqual(origin, { secure: true, isolated: true, gpu: 'object', protocol: 'https:' });

    const joined = await tab.waitFor('the tab to join over wss', (s) => (s.status?.workerId ? s : null), 120_000);
    const id = joined.status!.workerId!;
    t.diagnostic(`the https tab trains on ${joined.backend?.name} (${joined.backend?.device})`);
    const seen = await waitFor(
      'the tab to have done shards',
      async () => {
        const w = (await c!.status()).workers.find((x) => x.id === id);
        return w && w.shardsDone >= 2 ? w : null;
      },
      120_000,
    );
    assert.equal(seen.kind, 'browser');

    // The dashboard over https builds its feed URL from location: wss://, and it goes live.
    const dashboard = await chromium.context.newPage();
    await dashboard.goto(/dashboard:\s+(\S+)/.exec(c.proc.output)![1]);
    // (The dashboard's CSP forbids eval, so no waitForFunction.)
    await dashboard.waitForSelector('#connection[data-state="live"]', { timeout: 60_000 });
    await waitFor('the dashboard to show a step', async () => (await shownStep(dashboard)) >= 1, 60_000);
  } finally {
    await chromium?.close();
    await stopAll(c);
  }
});
