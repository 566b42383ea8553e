import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agentString, parseJoinOptions, webSocketUrl } from '../src/options.js';

const at = (href: string) => {
  const u = new URL(href);
  return { protocol: u.protocol, host: u.host, search: u.search };
};

test('the WebSocket URL follows the page: same host and port, wss behind https', () => {
  assert.equal(webSocketUrl(at('http://127.0.0.1:8080/join?token=x')), 'ws://127.0.0.1:8080/ws');
  assert.equal(webSocketUrl(at('https://chorus.example.org/join?token=x')), 'wss://chorus.example.org/ws');
  assert.equal(webSocketUrl(at('http://[::1]:9000/join')), 'ws://[::1]:9000/ws');
});

test('the join link is read: token, forced backend, selftest, micro-batch, threads', () => {
  assert.deepEqual(parseJoinOptions(at('http://h:1/join?token=a%2Bb')), {
    url: 'ws://h:1/ws',
    token: 'a+b',
    backend: null,
    selftest: false,
    microBatch: null,
    threads: null,
  });
  const forced = parseJoinOptions(at('http://h:1/join?token=t&backend=wasm&micro-batch=16'));
  assert.equal(forced.backend, 'wasm');
  assert.equal(forced.microBatch, 16);
  assert.equal(parseJoinOptions(at('http://h:1/join?token=t&threads=2')).threads, 2);
  assert.throws(() => parseJoinOptions(at('http://h:1/join?token=t&threads=0')), /threads must be a positive integer/);
  assert.equal(parseJoinOptions(at('http://h:1/join?selftest&backend=webgpu')).selftest, true);
  assert.throws(() => parseJoinOptions(at('http://h:1/join?token=t&backend=tensorflow')), /unknown backend 'tensorflow'.*webgpu, webgl, wasm, cpu/);
  assert.throws(() => parseJoinOptions(at('http://h:1/join')), /no join token/);
  assert.throws(() => parseJoinOptions(at('http://h:1/join?token=t&micro-batch=0')), /positive integer/);
});

test('the user agent is cut to what the protocol accepts', () => {
  assert.equal(agentString('  Mozilla/5.0 short  '), 'Mozilla/5.0 short');
  const long = agentString('x'.repeat(1000));
  assert.equal(long.length, 160);
  assert.ok(long.endsWith('…'));
});
