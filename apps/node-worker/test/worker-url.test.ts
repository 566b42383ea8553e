import { test } from 'node:test';
import assert from 'node:assert/strict';
import { workerUrl } from '../src/ws-transport.js';

test('workerUrl: what a person pastes becomes the coordinator\'s WebSocket URL, wss for https', () => {
  assert.equal(workerUrl('ws://h:8080/ws'), 'ws://h:8080/ws');
  assert.equal(workerUrl('wss://h:8080/ws'), 'wss://h:8080/ws');
  assert.equal(workerUrl('wss://h:8080'), 'wss://h:8080/ws');
  assert.equal(workerUrl('https://h:8080/'), 'wss://h:8080/ws');
  assert.equal(workerUrl('http://h:8080'), 'ws://h:8080/ws');
  assert.equal(workerUrl('h:8080'), 'ws://h:8080/ws');
});
