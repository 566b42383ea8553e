import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { connectWs } from '../src/index.js';

test('carries binary frames both ways and reports the close code and reason', async () => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as AddressInfo;
  server.on('connection', (socket) => {
    socket.on('message', (data: Buffer) => {
      socket.send(Buffer.from([...data].reverse()));
      socket.close(4001, 'wrong join token');
    });
  });
  const received: Uint8Array[] = [];
  const closed = new Promise<[number, string]>((resolve) => {
    void connectWs(`ws://127.0.0.1:${port}`, {
      onMessage: (frame) => received.push(frame),
      onClose: (code, reason) => resolve([code, reason]),
    }).then((t) => t.send(new Uint8Array([1, 2, 3])));
  });
  assert.deepEqual(await closed, [4001, 'wrong join token']);
  assert.deepEqual([...received[0]], [3, 2, 1]);
  await new Promise((r) => server.close(r));
});

test('rejects when nothing listens', async () => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  await assert.rejects(connectWs(`ws://127.0.0.1:${port}`, { onMessage() {}, onClose() {} }), /ECONNREFUSED/);
});
