import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planShards } from '../src/run/scheduler.js';

const sizes = (plans: ReturnType<typeof planShards>) => plans.map((p) => p.end - p.start);

test('shares are proportional to speed, cut on group boundaries, and cover the range exactly once', () => {
  const plans = planShards(0, 128, [{ id: 'a', imagesPerSecond: 100 }, { id: 'b', imagesPerSecond: 50 }], { bnGroup: 4 });
  assert.deepEqual(plans.map((p) => p.workerId), ['a', 'b']);
  assert.deepEqual(sizes(plans), [84, 44]);
  assert.equal(plans[0].start, 0);
  assert.equal(plans[0].end, plans[1].start);
  assert.equal(plans[1].end, 128);
  for (const p of plans) assert.equal(p.start % 4, 0);
});

test('every worker gets at least one group while there are enough', () => {
  const plans = planShards(0, 64, [{ id: 'fast', imagesPerSecond: 1000 }, { id: 'slow', imagesPerSecond: 1 }], { bnGroup: 8 });
  assert.deepEqual(sizes(plans), [56, 8]);
  // Fewer groups than workers: the fastest get them.
  const scarce = planShards(0, 16, [{ id: 'x', imagesPerSecond: 1 }, { id: 'y', imagesPerSecond: 5 }, { id: 'z', imagesPerSecond: 3 }], { bnGroup: 8 });
  assert.deepEqual(scarce.map((p) => p.workerId), ['y', 'z']);
});

test('a sub-range (a re-issued shard) is planned inside its bounds, with a short last group', () => {
  const plans = planShards(40, 62, [{ id: 'a', imagesPerSecond: 1 }, { id: 'b', imagesPerSecond: 1 }], { bnGroup: 8 });
  assert.deepEqual(plans.map((p) => [p.start, p.end]), [[40, 56], [56, 62]]);
});

test('unknown or broken speeds count as equal; no workers is an error', () => {
  const plans = planShards(0, 32, [{ id: 'a', imagesPerSecond: NaN }, { id: 'b', imagesPerSecond: 0 }], { bnGroup: 8 });
  assert.deepEqual(sizes(plans), [16, 16]);
  assert.throws(() => planShards(0, 8, [], { bnGroup: 8 }), /no workers/);
  assert.deepEqual(planShards(5, 5, [{ id: 'a', imagesPerSecond: 1 }], { bnGroup: 8 }), []);
});
