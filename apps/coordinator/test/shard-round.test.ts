/**
 * Fault handling inside a round, without processes or sockets: a fake clock, a fake port that
 * records what would be sent, and the real round, reducer-like sink and scheduler.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WorkerRuntime } from '@chorus/protocol';
import { EvalTally } from '../src/run/eval-tally.js';
import { Membership, type WorkerRecord } from '../src/run/membership.js';
import { evaluationPlanner, trainingPlanner } from '../src/run/planners.js';
import { ShardRound, type RoundPort, type RoundShard } from '../src/run/shard-round.js';
import type { Connection } from '../src/http/connection.js';

const runtime: WorkerRuntime = { kind: 'node', backend: 'test', device: 'test', cores: 1, microBatch: 8, agent: 'test' };

/** A run's worth of test doubles: membership, a clock, a port that records sends and events. */
function harness(options: { deadlineMs?: number; msPerExample?: number } = {}) {
  let now = 0;
  let nextId = 1;
  const membership = new Membership();
  const sent: { worker: string; shard: RoundShard }[] = [];
  const events: { kind: string; message: string }[] = [];
  let reissued = 0;
  const port: RoundPort = {
    ready: () => membership.ready(),
    worker: (id) => membership.get(id),
    now: () => now,
    nextShardId: () => nextId++,
    send: (worker, shard) => sent.push({ worker: worker.id, shard }),
    deadlineFor: (_worker, count) => (options.msPerExample ? options.msPerExample * count : (options.deadlineMs ?? 1000)),
    event: (kind, message) => events.push({ kind, message }),
    reissued: () => reissued++,
  };
  const join = (id?: string): WorkerRecord => {
    const worker = membership.join(runtime, {} as Connection, now, id);
    worker.speed = 100; // measured: deadlines and shares follow it
    return worker;
  };
  return {
    membership,
    port,
    sent,
    events,
    join,
    get reissued() {
      return reissued;
    },
    set now(t: number) {
      now = t;
    },
    get now() {
      return now;
    },
    /** What was last sent to `worker`. */
    last: (worker: WorkerRecord) => sent.filter((s) => s.worker === worker.id).at(-1)?.shard,
  };
}

/** A training-like sink that counts examples (the reducer's range contract, without gradients). */
function countingSink(size: number) {
  return new EvalTally(size);
}

const result = { lossSum: 1, correct: 1 };

function trainingRound(h: ReturnType<typeof harness>, size = 32) {
  const sink = countingSink(size);
  const round = new ShardRound({ label: 'step 0', replyName: 'gradient', size, sink, port: h.port, plan: trainingPlanner(8) });
  return { round, sink };
}

const answer = (round: ShardRound<typeof result>, worker: WorkerRecord, shard: RoundShard) => round.accept(worker, shard.id, shard.end - shard.start, result);

test('a round splits the batch over the ready workers on group boundaries and completes when every range is in', async () => {
  const h = harness();
  const [a, b] = [h.join(), h.join()];
  const { round } = trainingRound(h);
  round.start();
  assert.deepEqual(h.sent.map((s) => [s.worker, s.shard.start, s.shard.end]), [[a.id, 0, 16], [b.id, 16, 32]]);
  assert.equal(answer(round, a, h.last(a)!).kind, 'accepted');
  assert.equal(answer(round, b, h.last(b)!).kind, 'accepted');
  assert.equal(await round.done, true);
  assert.deepEqual([...round.holders()].sort(), [a.id, b.id]);
});

test('a missed deadline: the straggler is named once and its shard goes to an idle worker; its late answer is not counted', async () => {
  const h = harness({ deadlineMs: 1000 });
  const [fast, slow] = [h.join(), h.join()];
  const { round, sink } = trainingRound(h);
  round.start();
  const slowShard = h.last(slow)!;
  answer(round, fast, h.last(fast)!); // fast is idle now
  h.now = 999;
  round.tick(h.now);
  assert.equal(h.events.length, 0, 'not late yet');
  h.now = 1001;
  round.tick(h.now);
  round.tick(h.now + 10);
  assert.deepEqual(h.events.map((e) => e.kind), ['straggler', 'reissue']);
  assert.match(h.events[0].message, new RegExp(`worker ${slow.id} missed the deadline of step 0`));
  assert.match(h.events[1].message, new RegExp(`shard \\[16, 32\\) of step 0 re-issued: worker ${slow.id} missed its deadline`));
  assert.equal(slow.straggling, true);
  const again = h.last(fast)!;
  assert.deepEqual([again.start, again.end], [16, 32]);
  assert.equal(answer(round, slow, slowShard).kind, 'late', "the straggler's answer arrives after its shard was re-issued");
  assert.equal(sink.received, 16, 'nothing was counted for it');
  assert.equal(answer(round, fast, again).kind, 'accepted');
  assert.equal(await round.done, true);
  assert.equal(sink.received, 32);
  assert.equal(h.reissued, 1);
});

test('a missed deadline with nobody idle: the straggler keeps its shard (re-issuing would only queue it)', () => {
  const h = harness({ deadlineMs: 1000 });
  const [, slow] = [h.join(), h.join()];
  const { round } = trainingRound(h);
  round.start();
  h.now = 5000;
  round.tick(h.now);
  assert.deepEqual(h.events.map((e) => e.kind), ['straggler', 'straggler'], 'both are late; nobody is idle to take over');
  assert.equal(h.sent.length, 2, 'nothing re-issued');
  assert.equal(round.pending().find((s) => s.workerId === slow.id)?.end, 32);
});

test("a worker's first shard (no speed measured yet) is reported as warm-up, not as a missed deadline", () => {
  const h = harness({ deadlineMs: 1000 });
  const worker = h.join();
  worker.speed = null;
  h.join();
  const { round } = trainingRound(h);
  round.start();
  h.now = 61_000;
  round.tick(h.now);
  assert.match(h.events[0].message, /has not finished its first shard in 61 s \(warm-up included\)/);
});

test('a worker leaving mid-round: its shard goes to the others, idle ones first', async () => {
  const h = harness();
  const [a, b, c] = [h.join(), h.join(), h.join()];
  const { round, sink } = trainingRound(h, 48);
  round.start();
  answer(round, a, h.last(a)!); // a is idle, c is busy
  h.membership.leave(b.id, 'gone');
  round.workerLeft(b.id);
  const moved = h.last(a)!;
  assert.deepEqual([moved.start, moved.end], [16, 32], 'all of it to the idle worker');
  assert.match(h.events.at(-1)!.message, new RegExp(`worker ${b.id} left`));
  answer(round, a, moved);
  answer(round, c, h.last(c)!);
  assert.equal(await round.done, true);
  assert.equal(sink.received, 48);
});

test('nobody left: the range waits, and the next worker to join gets it', async () => {
  const h = harness();
  const only = h.join();
  const { round } = trainingRound(h);
  round.start();
  h.membership.leave(only.id, 'gone');
  round.workerLeft(only.id);
  assert.deepEqual(round.waiting, [{ start: 0, end: 32 }]);
  round.tick(10_000); // nothing to do, nothing breaks
  const joiner = h.join();
  round.workerJoined();
  assert.deepEqual(round.waiting, []);
  const shard = h.last(joiner)!;
  assert.deepEqual([shard.start, shard.end], [0, 32]);
  answer(round, joiner, shard);
  assert.equal(await round.done, true);
});

test('a rejoin with the same id: the worker gets new shards; its answer to the old one is not counted', async () => {
  const h = harness();
  const w = h.join();
  const { round, sink } = trainingRound(h, 16);
  round.start();
  const old = h.last(w)!;
  h.membership.leave(w.id, 'connection lost');
  round.workerLeft(w.id);
  const back = h.join(w.id);
  assert.equal(back, w, 'the same record, with its measured speed');
  round.workerJoined();
  const fresh = h.last(w)!;
  assert.notEqual(fresh.id, old.id);
  assert.equal(answer(round, w, old).kind, 'late');
  assert.equal(sink.received, 0);
  assert.equal(answer(round, w, fresh).kind, 'accepted');
  assert.equal(await round.done, true);
});

test('a result whose count differs from its shard is refused and changes nothing', () => {
  const h = harness();
  const w = h.join();
  const { round, sink } = trainingRound(h, 16);
  round.start();
  const shard = h.last(w)!;
  const outcome = round.accept(w, shard.id, 15, result);
  assert.deepEqual(outcome, { kind: 'refused', reason: `shard ${shard.id} has 16 examples, the gradient says 15` });
  assert.equal(sink.received, 0);
  assert.equal(round.pending().length, 1);
});

test('evaluation rounds are re-issued the same way: a leaver, a deadline, pieces of at most one batch', async () => {
  const h = harness({ deadlineMs: 1000 });
  const [a, b] = [h.join(), h.join()];
  const tally = new EvalTally(100);
  const round = new ShardRound({ label: 'evaluation 1', size: 100, sink: tally, port: h.port, plan: evaluationPlanner(32) });
  round.start();
  assert.ok(h.sent.every((s) => s.shard.end - s.shard.start <= 32), 'pieces of at most one batch');
  assert.equal(h.sent.reduce((n, s) => n + s.shard.end - s.shard.start, 0), 100);
  // a answers everything it has; b leaves; then a misses a deadline with nobody idle.
  let accepted = 0;
  const reply = (s: RoundShard) => (answer(round, a, s).kind === 'accepted' ? accepted++ : 0);
  for (const s of h.sent.filter((x) => x.worker === a.id)) reply(s.shard);
  h.membership.leave(b.id, 'gone');
  round.workerLeft(b.id);
  assert.ok(h.events.some((e) => new RegExp(`of evaluation 1 re-issued: worker ${b.id} left`).test(e.message)));
  h.now = 5000;
  round.tick(h.now);
  assert.ok(h.events.some((e) => e.kind === 'straggler' && /missed the deadline of evaluation 1/.test(e.message)));
  for (const s of round.pending()) reply(s);
  assert.equal(await round.done, true);
  assert.equal(tally.received, 100);
  assert.equal(tally.correct, accepted, 'each piece counted once');
});

test('queued pieces: each deadline covers the examples queued ahead of it, so a worker working through its queue is no straggler; a stalled one still is', async () => {
  const h = harness({ msPerExample: 10 });
  const a = h.join();
  const tally = new EvalTally(64);
  const round = new ShardRound({ label: 'evaluation 1', size: 64, sink: tally, port: h.port, plan: evaluationPlanner(16) });
  round.start();
  // Four pieces at once; a deadline for each piece alone would be 160 ms for all four.
  assert.deepEqual(h.sent.map((s) => s.shard.deadline), [160, 320, 480, 640]);
  const b = h.join(); // idle: a late piece would go to it
  h.now = 150;
  assert.equal(answer(round, a, h.sent[0]!.shard).kind, 'accepted');
  h.now = 300;
  assert.equal(answer(round, a, h.sent[1]!.shard).kind, 'accepted');
  round.tick(h.now);
  assert.equal(h.events.length, 0, 'on schedule: nothing late, nothing re-issued');
  // Then a stops: past the third piece's deadline it goes to b, and a is named once.
  h.now = 500;
  round.tick(h.now);
  assert.equal(h.events.filter((e) => e.kind === 'straggler').length, 1);
  assert.equal(h.last(b)?.start, 32, 'the third piece went to the idle worker');
  // b's deadline counts from now, for its own queue.
  assert.equal(h.last(b)?.deadline, 500 + 160);
  for (const s of round.pending()) assert.equal(round.accept(h.membership.get(s.workerId)!, s.id, s.end - s.start, result).kind, 'accepted');
  assert.equal(await round.done, true);
  assert.equal(tally.received, 64);
});

test('cancel ends the round at once: done is false and later answers are not counted', async () => {
  const h = harness();
  const w = h.join();
  const { round, sink } = trainingRound(h, 16);
  round.start();
  round.cancel();
  assert.equal(await round.done, false);
  assert.equal(answer(round, w, h.last(w)!).kind, 'late');
  assert.equal(sink.received, 0);
});
