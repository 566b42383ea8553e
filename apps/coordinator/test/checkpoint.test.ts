import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, truncate, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CheckpointStore,
  checkpointFileName,
  decodeCheckpoint,
  CheckpointFormatError,
  type CheckpointState,
} from '../src/store/checkpoint.js';

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-checkpoint-test-'));
  dirs.push(dir);
  return dir;
}

function randomArray(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    a[i] = (s / 2 ** 32 - 0.5) * 4;
  }
  return a;
}

function state(step: number, kind: 'sgd' | 'adam' = 'adam'): CheckpointState {
  const params = randomArray(1001, step + 1);
  // Values whose bits must survive exactly: signed zeros, subnormals, extremes, infinities.
  params.set([-0, 0, 1e-45, -1e-45, 1.1754942e-38, -3e-39, 3.4028235e38, -Infinity, Infinity, 1 / 3], 0);
  const bnStats = randomArray(37, step + 2);
  bnStats[5] = -0;
  bnStats[6] = 2e-40;
  return {
    step,
    params,
    bnStats,
    optimizer: {
      kind,
      updates: step,
      slots: kind === 'adam' ? [randomArray(1001, step + 3), randomArray(1001, step + 4)] : [randomArray(1001, step + 5)],
    },
    config: { preset: 'tiny', batchSize: 128, lr: { kind: 'cosine', peak: 0.1 }, seed: 7, note: 'ünïcødé ✓' },
    history: [{ step, loss: 2.3, accuracy: 0.1 }],
  };
}

const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

function assertSameState(actual: CheckpointState | null, expected: CheckpointState): void {
  assert.ok(actual, 'a checkpoint was expected');
  assert.equal(actual.step, expected.step);
  assert.deepEqual(bits(actual.params), bits(expected.params));
  assert.deepEqual(bits(actual.bnStats), bits(expected.bnStats));
  assert.equal(actual.optimizer.kind, expected.optimizer.kind);
  assert.equal(actual.optimizer.updates, expected.optimizer.updates);
  assert.equal(actual.optimizer.slots.length, expected.optimizer.slots.length);
  actual.optimizer.slots.forEach((s, i) => {
    assert.ok(s instanceof Float32Array);
    assert.deepEqual(bits(s), bits(expected.optimizer.slots[i]));
  });
  assert.deepEqual(actual.config, expected.config);
  assert.deepEqual(actual.history, expected.history);
}

async function checkpointNames(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith('.chorus')).sort();
}

test('save then loadLatest round-trips every value bit-exactly (adam and sgd)', async () => {
  const dir = await tempDir();
  const store = new CheckpointStore(dir);
  const adam = state(12, 'adam');
  const path = await store.save(adam);
  assert.equal(path, join(dir, 'checkpoint-000000012.chorus'));
  const loaded = await store.loadLatest();
  assertSameState(loaded, adam);
  assert.ok(Object.is(loaded!.params[0], -0));
  assert.equal(loaded!.params[2], Math.fround(1e-45));
  assert.equal(loaded!.params[2], 2 ** -149);

  const sgd = state(13, 'sgd');
  delete sgd.history;
  await store.save(sgd);
  const again = await new CheckpointStore(dir).loadLatest();
  assertSameState(again, sgd);
  assert.ok(!('history' in again!), 'no history saved, none loaded');
  // The data section is 4-byte aligned in the file.
  const bytes = await readFile(path);
  assert.equal(bytes.toString('latin1', 0, 8), 'CHORUSCK');
  assert.equal((16 + bytes.readUInt32LE(12)) % 8, 0);
});

test('subarray views are saved as their own elements only', async () => {
  const dir = await tempDir();
  const s = state(1, 'sgd');
  const big = new Float32Array(2000).fill(9);
  big.set(s.params, 500);
  s.params = big.subarray(500, 500 + s.params.length);
  await new CheckpointStore(dir).save(s);
  assertSameState(await new CheckpointStore(dir).loadLatest(), s);
});

test('file names are zero-padded to 9 digits and ordered numerically beyond that', async () => {
  assert.equal(checkpointFileName(7), 'checkpoint-000000007.chorus');
  assert.equal(checkpointFileName(1234567890), 'checkpoint-1234567890.chorus');
  const dir = await tempDir();
  const store = new CheckpointStore(dir, { keep: 2 });
  await store.save(state(999_999_999, 'sgd'));
  await store.save(state(1_000_000_000, 'sgd'));
  assert.equal((await store.loadLatest())?.step, 1_000_000_000);
});

test('only the newest `keep` checkpoints are kept', async () => {
  const dir = await tempDir();
  const store = new CheckpointStore(dir, { keep: 3 });
  for (const step of [1, 2, 3, 4, 5]) await store.save(state(step, 'sgd'));
  assert.deepEqual(await checkpointNames(dir), [3, 4, 5].map(checkpointFileName));
  assert.equal((await store.loadLatest())?.step, 5);

  // Concurrent saves are serialised and pruned the same way.
  await Promise.all([6, 7, 8, 9].map((step) => store.save(state(step, 'sgd'))));
  assert.deepEqual(await checkpointNames(dir), [7, 8, 9].map(checkpointFileName));
  assert.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.tmp')), []);

  const one = new CheckpointStore(await tempDir(), { keep: 1 });
  for (const step of [10, 20]) await one.save(state(step, 'sgd'));
  assert.deepEqual(await checkpointNames(one.dir), [checkpointFileName(20)]);
  assert.throws(() => new CheckpointStore(dir, { keep: 0 }), /keep/);
});

test('a corrupted newest checkpoint (one flipped byte) is skipped for the previous one', async () => {
  const dir = await tempDir();
  const warnings: string[] = [];
  const store = new CheckpointStore(dir, { keep: 3, log: (m) => warnings.push(m) });
  const s1 = state(100);
  await store.save(s1);
  const path = await store.save(state(200));
  const bytes = await readFile(path);
  bytes[Math.floor(bytes.length / 2)] ^= 0x01;
  await writeFile(path, bytes);

  assertSameState(await store.loadLatest(), s1);
  assert.ok(warnings.some((w) => w.includes(checkpointFileName(200)) && /checksum/.test(w)), warnings.join('\n'));
  // The bad file is moved aside, so pruning and later loads do not trip over it.
  assert.deepEqual(await checkpointNames(dir), [checkpointFileName(100)]);
  assert.ok((await readdir(dir)).includes(`${checkpointFileName(200)}.corrupt`));
  assert.throws(() => decodeCheckpoint(bytes), CheckpointFormatError);
});

test('a truncated newest checkpoint is skipped for the previous one', async () => {
  const dir = await tempDir();
  const warnings: string[] = [];
  const store = new CheckpointStore(dir, { log: (m) => warnings.push(m) });
  const s1 = state(1);
  await store.save(s1);
  const s2 = state(2);
  await store.save(s2);
  const path = await store.save(state(3));
  const size = (await readFile(path)).length;
  await truncate(path, size - 1000);
  assertSameState(await store.loadLatest(), s2);
  assert.equal(warnings.filter((w) => w.includes(checkpointFileName(3))).length >= 1, true);

  // Truncated to nothing, and to less than the preamble, both fail cleanly too.
  for (const length of [0, 10, 40]) {
    assert.throws(() => decodeCheckpoint(new Uint8Array(length)), CheckpointFormatError);
  }
});

test('when every checkpoint is unusable, loadLatest refuses instead of returning null', async () => {
  const dir = await tempDir();
  const store = new CheckpointStore(dir, { log: () => {} });
  const path = await store.save(state(5));
  await truncate(path, 100);
  await assert.rejects(store.loadLatest(), /no usable checkpoint/);
  // Nothing is moved aside in that case: the operator decides.
  assert.deepEqual(await checkpointNames(dir), [checkpointFileName(5)]);
});

test('a crash mid-write leaves a temp file that is never loaded and is cleaned up later', async () => {
  const dir = await tempDir();
  const store = new CheckpointStore(dir);
  const s1 = state(10);
  const good = await store.save(s1);
  // A writer (pid 99999999: not a live process) died while writing step 11: partial data.
  const partial = join(dir, '.checkpoint-11.99999999.0a1b2c.tmp');
  await writeFile(partial, (await readFile(good)).subarray(0, 500));
  // Even a complete, valid file under a temp name must never be picked up.
  const complete = join(dir, '.checkpoint-12.99999999.0a1b2d.tmp');
  await copyFile(good, complete);
  // A temp file of a live writer (this test's parent process) is left alone.
  const live = join(dir, `.checkpoint-13.${process.ppid}.0a1b2e.tmp`);
  await writeFile(live, 'x');

  assertSameState(await store.loadLatest(), s1);
  assertSameState(await new CheckpointStore(dir).loadLatest(), s1);

  await store.save(state(14));
  const names = await readdir(dir);
  assert.ok(!names.includes('.checkpoint-11.99999999.0a1b2c.tmp'));
  assert.ok(!names.includes('.checkpoint-12.99999999.0a1b2d.tmp'));
  assert.ok(names.includes(`.checkpoint-13.${process.ppid}.0a1b2e.tmp`));
  assert.equal((await store.loadLatest())?.step, 14);
});

test('no checkpoints gives null; an unreadable directory gives a clear error', async () => {
  const dir = await tempDir();
  assert.equal(await new CheckpointStore(dir).loadLatest(), null);
  assert.equal(await new CheckpointStore(join(dir, 'does-not-exist')).loadLatest(), null);
  await writeFile(join(dir, 'unrelated.txt'), 'hello');
  assert.equal(await new CheckpointStore(dir).loadLatest(), null);

  const notADir = join(dir, 'unrelated.txt');
  await assert.rejects(new CheckpointStore(notADir).loadLatest(), (err: Error) => {
    assert.match(err.message, /cannot read checkpoint directory/);
    assert.ok(err.message.includes(notADir));
    return true;
  });
});

test('save creates the directory and rejects malformed states', async () => {
  const dir = join(await tempDir(), 'nested', 'checkpoints');
  const store = new CheckpointStore(dir);
  await store.save(state(0, 'sgd'));
  assert.equal((await store.loadLatest())?.step, 0);
  await assert.rejects(store.save({ ...state(1), step: -1 }), /step/);
  await assert.rejects(store.save({ ...state(1), step: 1.5 }), /step/);
  await assert.rejects(store.save({ ...state(1), params: [1, 2] as unknown as Float32Array }), /params/);
  // A failed save does not block later ones.
  await store.save(state(2, 'sgd'));
  assert.equal((await store.loadLatest())?.step, 2);
  assert.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.tmp')), []);
});

test('public weights (compressed codecs) round-trip bit-exactly in a version 2 file; without them the file stays version 1', async () => {
  const dir = await tempDir();
  const store = new CheckpointStore(dir);
  const plain = state(3, 'sgd');
  const plainPath = await store.save(plain);
  assert.equal((await readFile(plainPath)).readUInt32LE(8), 1);
  assert.ok(!('publicParams' in (await store.loadLatest())!));

  const withPublic = { ...state(4, 'adam'), publicParams: randomArray(50, 9) };
  const path = await store.save(withPublic);
  const bytes = await readFile(path);
  assert.equal(bytes.readUInt32LE(8), 2);
  const loaded = await store.loadLatest();
  assertSameState(loaded, withPublic);
  assert.deepEqual(bits(loaded!.publicParams!), bits(withPublic.publicParams));
  assert.equal(loaded!.optimizer.slots.length, withPublic.optimizer.slots.length);
});

test('a version that does not match what the header holds, or an unknown version, is refused', async () => {
  const dir = await tempDir();
  const store = new CheckpointStore(dir);
  const path = await store.save({ ...state(4, 'sgd'), publicParams: randomArray(50, 9) });
  const bytes = Buffer.from(await readFile(path));
  const rehash = async (b: Buffer) => {
    const { createHash } = await import('node:crypto');
    createHash('sha256').update(b.subarray(0, b.length - 32)).digest().copy(b, b.length - 32);
    return b;
  };
  const asV1 = Buffer.from(bytes);
  asV1.writeUInt32LE(1, 8);
  const v1 = await rehash(asV1);
  assert.throws(() => decodeCheckpoint(v1), CheckpointFormatError);
  assert.throws(() => decodeCheckpoint(v1), /format version 1 has no room for public weights/);
  const asV3 = Buffer.from(bytes);
  asV3.writeUInt32LE(3, 8);
  const v3 = await rehash(asV3);
  assert.throws(() => decodeCheckpoint(v3), /format version 3 needs low-rank factors/);
  const asV4 = Buffer.from(bytes);
  asV4.writeUInt32LE(4, 8);
  const v4 = await rehash(asV4);
  assert.throws(() => decodeCheckpoint(v4), /unsupported checkpoint format version 4 \(this build reads 1, 2 and 3\)/);
});

test('low-rank factors round-trip bit-exactly in a version 3 file, with public weights or without', async () => {
  const dir = await tempDir();
  const store = new CheckpointStore(dir);
  for (const [step, extra] of [[5, { publicParams: randomArray(50, 9) }], [6, {}]] as const) {
    const saved = { ...state(step, 'sgd'), ...extra, lowRankFactors: randomArray(12, step) };
    const path = await store.save(saved);
    const bytes = Buffer.from(await readFile(path));
    assert.equal(bytes.readUInt32LE(8), 3);
    const loaded = decodeCheckpoint(bytes);
    assertSameState(loaded, saved);
    assert.deepEqual(bits(loaded.lowRankFactors!), bits(saved.lowRankFactors));
    assert.equal('publicParams' in loaded, 'publicParams' in saved);
    if ('publicParams' in saved) assert.deepEqual(bits(loaded.publicParams!), bits(saved.publicParams!));
  }
  // A version 2 file claiming factors is refused, as is a version 3 file without them.
  const path = await store.save({ ...state(7, 'sgd'), publicParams: randomArray(50, 9), lowRankFactors: randomArray(12, 7) });
  const bytes = Buffer.from(await readFile(path));
  bytes.writeUInt32LE(2, 8);
  const { createHash } = await import('node:crypto');
  createHash('sha256').update(bytes.subarray(0, bytes.length - 32)).digest().copy(bytes, bytes.length - 32);
  assert.throws(() => decodeCheckpoint(bytes), /format version 2 has no room for low-rank factors/);
});
