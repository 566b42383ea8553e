import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TlsConfigError, advertisedUrls, firstDnsName, insecureRemoteNotice, isLoopbackHost, loadTlsFiles } from '../src/http/tls.js';

const openssl = '/usr/bin/openssl';

test('printed URLs: http and ws without TLS, https and wss with it', () => {
  const plain = advertisedUrls({ host: '127.0.0.1', port: 8080, token: 'a b' });
  assert.deepEqual(plain, {
    base: 'http://127.0.0.1:8080',
    dashboard: 'http://127.0.0.1:8080/?token=a%20b',
    join: 'http://127.0.0.1:8080/join?token=a%20b',
    metrics: 'http://127.0.0.1:8080/metrics',
    ws: 'ws://127.0.0.1:8080/ws',
    localWs: 'ws://127.0.0.1:8080/ws',
    worker: 'npx chorus-worker ws://127.0.0.1:8080/ws --token a b',
  });
  const secure = advertisedUrls({ host: 'chorus.lab.example', port: 8443, token: 't', tls: { dnsName: 'chorus.lab.example' } });
  assert.equal(secure.dashboard, 'https://chorus.lab.example:8443/?token=t');
  assert.equal(secure.join, 'https://chorus.lab.example:8443/join?token=t');
  assert.equal(secure.metrics, 'https://chorus.lab.example:8443/metrics');
  assert.equal(secure.worker, 'npx chorus-worker wss://chorus.lab.example:8443/ws --token t');
  assert.equal(secure.localWs, 'wss://chorus.lab.example:8443/ws');
});

test('printed URLs on every address: the certificate\'s name with TLS, localhost without; local workers use localhost', () => {
  const plain = advertisedUrls({ host: '0.0.0.0', port: 1, token: 't' });
  assert.equal(plain.base, 'http://localhost:1');
  assert.equal(plain.localWs, 'ws://localhost:1/ws');
  const named = advertisedUrls({ host: '::', port: 1, token: 't', tls: { dnsName: 'gpu-box.lan' } });
  assert.equal(named.base, 'https://gpu-box.lan:1');
  assert.equal(named.ws, 'wss://gpu-box.lan:1/ws');
  assert.equal(named.localWs, 'wss://localhost:1/ws');
  const unnamed = advertisedUrls({ host: '0.0.0.0', port: 1, token: 't', tls: { dnsName: null } });
  assert.equal(unnamed.base, 'https://localhost:1');
  // An IPv6 literal needs brackets in a URL.
  assert.equal(advertisedUrls({ host: '::1', port: 2, token: 't' }).ws, 'ws://[::1]:2/ws');
});

test('the remote-tabs notice: only for a non-loopback address without TLS, and it says how to fix it', () => {
  for (const host of ['0.0.0.0', '::', '192.168.1.20', 'gpu-box.lan']) {
    const line = insecureRemoteNotice(host, false);
    assert.ok(line, host);
    assert.ok(!line.includes('\n'), 'one line');
    assert.match(line, /WebGPU/);
    assert.match(line, /--tls-cert FILE --tls-key FILE/);
    assert.match(line, /reverse proxy/);
    assert.equal(insecureRemoteNotice(host, true), null);
  }
  for (const host of ['127.0.0.1', '127.0.1.1', 'localhost', '::1', '[::1]']) {
    assert.equal(insecureRemoteNotice(host, false), null, host);
    assert.ok(isLoopbackHost(host), host);
  }
});

test('firstDnsName skips addresses and wildcards', () => {
  assert.equal(firstDnsName('IP Address:127.0.0.1, DNS:*.lab.example, DNS:chorus.lab.example, DNS:localhost'), 'chorus.lab.example');
  assert.equal(firstDnsName('IP Address:10.0.0.1'), null);
  assert.equal(firstDnsName(undefined), null);
});

test('neither flag: plain http; only one: a clear refusal', async () => {
  assert.equal(await loadTlsFiles(undefined, undefined), undefined);
  await assert.rejects(loadTlsFiles('cert.pem', undefined), { name: 'Error', message: '--tls-cert and --tls-key go together: --tls-key is missing' });
  await assert.rejects(loadTlsFiles(undefined, 'key.pem'), /--tls-cert is missing/);
  await assert.rejects(loadTlsFiles(undefined, 'key.pem'), TlsConfigError);
});

test('certificate and key files: read, checked, and each mistake named', { skip: existsSync(openssl) ? false : `no ${openssl}` }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-tls-unit-'));
  try {
    const make = (name: string) =>
      execFileSync(openssl, [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
        '-subj', '/CN=chorus test', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`),
      ], { stdio: 'ignore' });
    make('a');
    make('b');
    const a = { cert: join(dir, 'a.pem'), key: join(dir, 'a.key') };

    const ok = await loadTlsFiles(a.cert, a.key);
    assert.ok(ok);
    assert.equal(ok.fingerprint256, new X509Certificate(await readFile(a.cert)).fingerprint256);
    assert.equal(ok.dnsName, 'localhost');
    assert.ok(ok.validTo.getTime() > Date.now());
    assert.deepEqual(ok.cert, await readFile(a.cert));

    const refusal = async (cert: string, key: string, message: RegExp) => {
      const error = await loadTlsFiles(cert, key).then(() => null, (e: unknown) => e);
      assert.ok(error instanceof TlsConfigError, `expected a refusal for ${cert} ${key}, got ${String(error)}`);
      assert.match(error.message, message);
      // What a person reads: one line, no OpenSSL routine codes.
      assert.doesNotMatch(error.message, /\n|error:[0-9A-F]{8}/);
    };
    await refusal(join(dir, 'missing.pem'), a.key, /^cannot read --tls-cert .*missing\.pem: no such file$/);
    await refusal(a.cert, join(dir, 'missing.key'), /^cannot read --tls-key .*missing\.key: no such file$/);
    await refusal(dir, a.key, /it is a directory/);
    await refusal(a.key, a.cert, /^--tls-cert .*a\.key holds no PEM certificate/);
    await refusal(a.cert, a.cert, /^--tls-key .*a\.pem holds no PEM private key/);
    await refusal(a.cert, join(dir, 'b.key'), /^--tls-key .*b\.key is not the private key of the certificate in --tls-cert .*a\.pem \(its first certificate/);

    const garbled = join(dir, 'garbled.pem');
    await writeFile(garbled, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
    await refusal(garbled, a.key, /^--tls-cert .*garbled\.pem is not a PEM certificate/);

    const encrypted = join(dir, 'encrypted.key');
    execFileSync(openssl, ['pkey', '-in', a.key, '-aes256', '-passout', 'pass:secret', '-out', encrypted], { stdio: 'ignore' });
    await refusal(a.cert, encrypted, /encrypted.key is encrypted: give an unencrypted key/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
