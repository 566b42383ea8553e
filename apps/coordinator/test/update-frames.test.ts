import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PROTOCOL_VERSION, parseMessage, type Update } from '@chorus/protocol';
import { UpdateFrames, type FrameSink } from '../src/run/update-frames.js';

/** A socket that keeps what it was given, as a queued send does, and says when it has drained. */
class HeldSink implements FrameSink {
  held: Uint8Array[] = [];
  drained = true;
  sendFrame(frame: Uint8Array): void {
    this.held.push(frame);
  }
}

const update = (version: number, fill: number): Update => ({ type: 'update', v: PROTOCOL_VERSION, version, params: new Float32Array(1000).fill(fill), bnStats: new Float32Array(4) });
const paramsOf = (frame: Uint8Array) => {
  const m = parseMessage(frame);
  assert.equal(m.type, 'update');
  return m.type === 'update' ? m.params![0] : NaN;
};

test('the update buffer is reused once every socket has drained, and never while one still holds it', () => {
  const frames = new UpdateFrames();
  const fast = new HeldSink();
  const slow = new HeldSink();
  const first = frames.send(update(1, 1), [fast, slow]);
  const second = frames.send(update(2, 2), [fast, slow]);
  assert.equal(second.buffer, first.buffer, 'both drained: the same buffer');

  slow.drained = false; // the second update is still queued behind a slow link
  const third = frames.send(update(3, 3), [fast, slow]);
  assert.notEqual(third.buffer, second.buffer, 'a fresh buffer while the slow socket holds the old one');
  assert.equal(paramsOf(slow.held[1]!), 2, 'what the slow socket still has to send is unchanged');
  const fourth = frames.send(update(4, 4), [fast]);
  assert.notEqual(fourth.buffer, second.buffer, 'the slow socket still holds it, even though it is not a recipient now');
  assert.equal(paramsOf(slow.held[1]!), 2);

  slow.drained = true;
  const fifth = frames.send(update(5, 5), [fast]);
  assert.equal(fifth.buffer, second.buffer, 'drained: the buffer is reused');
  assert.equal(paramsOf(fast.held.at(-1)!), 5);
  assert.equal(paramsOf(third), 3, 'a fresh frame is not touched by later updates');
});
