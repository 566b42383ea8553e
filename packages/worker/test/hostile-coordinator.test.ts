/**
 * Whatever answers at the coordinator's address, the worker's process survives it: frames that
 * are a real int8 run's messages with bits flipped, cut short or reordered, and random bytes.
 * No exception leaves the transport's callback, nothing rejects unhandled, the weights the worker
 * computes at stay finite, and it either goes on, rejoins, or stops with the reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import fc from 'fast-check';
import { initialBnStats, initialParams } from '@chorus/model';
import { PROTOCOL_VERSION, PublicWeights, encodeMessage, getGradientCodec, type Message } from '@chorus/protocol';
import { ChorusWorker } from '../src/index.js';
import { FakeLink, layout, runtime, shardOf, until, welcome } from './fake-link.js';

await tf.setBackend('cpu');

type Welcome = Extract<Message, { type: 'welcome' }>;
const joined: Welcome = (() => {
  const w = welcome(3) as Welcome;
  return { ...w, run: { ...w.run, codec: 'int8' } };
})();

/** Frames of the run the worker joined, each valid as it stands: what the mutations start from. */
function templates(): Uint8Array[] {
  const pub = new PublicWeights(getGradientCodec('int8'), joined.params);
  const next = pub.advance(initialParams(layout, 2));
  const later = pub.advance(initialParams(layout, 3));
  const { labels, pixels, indices } = shardOf(2);
  const bnStats = initialBnStats(layout);
  const messages: Message[] = [
    { type: 'update', v: PROTOCOL_VERSION, version: 4, delta: next.values, scales: next.scales, bnStats, counted: Int32Array.of(1) },
    { type: 'update', v: PROTOCOL_VERSION, version: 5, delta: later.values, scales: later.scales, bnStats },
    { type: 'update', v: PROTOCOL_VERSION, version: 4, params: initialParams(layout, 2), bnStats },
    { type: 'assign', v: PROTOCOL_VERSION, step: 3, version: 3, shardId: 1, augmentSeed: 9, indices, labels, pixels },
    { type: 'assign', v: PROTOCOL_VERSION, step: 4, version: 4, shardId: 2, augmentSeed: 9, indices, labels, pixels },
    { type: 'evaluate', v: PROTOCOL_VERSION, evalId: 1, shardId: 3, version: 3, labels, pixels },
    joined,
    { ...joined, version: 7, run: { ...joined.run, codec: 'fp32' } },
    { type: 'error', v: PROTOCOL_VERSION, code: 'malformed', message: 'no' },
    { type: 'bye', v: PROTOCOL_VERSION, reason: 'done' },
    { type: 'heartbeat', v: PROTOCOL_VERSION, time: 1 },
  ];
  return messages.map((m) => encodeMessage(m));
}

const frame = (all: Uint8Array[]) =>
  fc.oneof(
    fc.record({ at: fc.nat({ max: all.length - 1 }), flips: fc.array(fc.nat(), { minLength: 1, maxLength: 4 }) }).map(({ at, flips }) => {
      const f = all[at]!.slice();
      for (const bit of flips) f[(bit >>> 3) % f.length]! ^= 1 << (bit & 7);
      return f;
    }),
    fc.record({ at: fc.nat({ max: all.length - 1 }), keep: fc.nat() }).map(({ at, keep }) => all[at]!.slice(0, keep % all[at]!.length)),
    fc.nat({ max: all.length - 1 }).map((at) => all[at]!),
    fc.uint8Array({ maxLength: 64 }),
  );

test('any frames from the coordinator: the worker survives, keeps finite weights, and goes on, rejoins or stops with a reason', { timeout: 300_000 }, async (t) => {
  const all = templates();
  const escaped: unknown[] = [];
  const onEscape = (error: unknown) => escaped.push(error);
  process.on('uncaughtException', onEscape);
  process.on('unhandledRejection', onEscape);
  const outcomes = { goingOn: 0, rejoined: 0, stopped: 0 };
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(frame(all), { minLength: 1, maxLength: 8 }), async (frames) => {
        const link = new FakeLink();
        const worker = new ChorusWorker({ url: 'ws://x', token: 'tok', connect: link.connect, runtime, reconnect: { initialMs: 1, maxMs: 2 } });
        let stoppedWith: Error | null = null;
        const running = worker.start().catch((error: Error) => (stoppedWith = error));
        try {
          await link.next('hello');
          link.deliver(joined);
          await until('the welcome', () => worker.publicWeights() !== null);
          for (const f of frames) {
            // Each call is the transport's callback: nothing may be thrown back into it.
            assert.doesNotThrow(() => link.connections[0]!.onMessage(f));
          }
          // Let the queue (shards, evaluations) drain.
          for (let i = 0; i < 3; i++) await (worker as unknown as { queue: Promise<void> }).queue;
          await new Promise((r) => setTimeout(r, 5));
          const weights = worker.publicWeights();
          if (weights) assert.ok(weights.every(Number.isFinite), 'the public weights stay finite');
          if (stoppedWith) {
            assert.match((stoppedWith as Error).message, /\S/, 'a stop gives its reason');
            outcomes.stopped++;
          } else if (link.closedByWorker.length > 0) outcomes.rejoined++;
          else outcomes.goingOn++;
        } finally {
          worker.stop('done');
          await running;
        }
        assert.deepEqual(escaped, [], 'nothing escaped to the process');
      }),
      { numRuns: 200, seed: Number(process.env.CHORUS_FUZZ_SEED ?? Date.now() % 2 ** 31) },
    );
  } finally {
    process.off('uncaughtException', onEscape);
    process.off('unhandledRejection', onEscape);
  }
  t.diagnostic(`outcomes: ${JSON.stringify(outcomes)}`);
  // Each path was reached, or the property proved less than it says.
  assert.ok(outcomes.goingOn > 0 && outcomes.rejoined > 0 && outcomes.stopped > 0, JSON.stringify(outcomes));
});
