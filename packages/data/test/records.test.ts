import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CIFAR10, CIFAR10_FILES, parseCifar10Records } from '../src/index.js';
import { loadCifar10 } from '../src/node/index.js';
import { CIFAR_DIR, realCifar10 } from './support.js';

const { recordBytes, imageBytes } = CIFAR10;

function countPerClass(labels: Uint8Array): number[] {
  const counts = new Array<number>(CIFAR10.classes).fill(0);
  for (const l of labels) counts[l]++;
  return counts;
}

describe('the real CIFAR-10', () => {
  test('has the known sizes, labels and class balance', async () => {
    const { train, test: testSplit } = await realCifar10();
    assert.equal(train.count, 50_000);
    assert.equal(train.labels.length, 50_000);
    assert.equal(train.pixels.length, 50_000 * imageBytes);
    assert.deepEqual([...train.labels.subarray(0, 5)], [6, 9, 9, 4, 1]);
    assert.deepEqual(countPerClass(train.labels), new Array(10).fill(5_000));
    assert.equal(testSplit.count, 10_000);
    assert.equal(testSplit.pixels.length, 10_000 * imageBytes);
    assert.deepEqual([...testSplit.labels.subarray(0, 5)], [3, 8, 8, 0, 6]);
    assert.deepEqual(countPerClass(testSplit.labels), new Array(10).fill(1_000));
  });

  test('keeps pixels in file order, batch files end to end', async () => {
    const { train } = await realCifar10();
    const batch3 = await readFile(join(CIFAR_DIR, 'data_batch_3.bin'));
    const record = 1234;
    const fromFile = batch3.subarray(record * recordBytes + 1, (record + 1) * recordBytes);
    const index = 20_000 + record;
    assert.deepEqual(train.pixels.subarray(index * imageBytes, (index + 1) * imageBytes), new Uint8Array(fromFile));
    assert.equal(train.labels[index], batch3[record * recordBytes]);
  });
});

describe('parseCifar10Records', () => {
  test('parses labels and pixels', () => {
    const bytes = new Uint8Array(2 * recordBytes);
    bytes[0] = 7;
    bytes[recordBytes] = 2;
    bytes[1] = 200;
    bytes[recordBytes + imageBytes] = 99;
    const split = parseCifar10Records(bytes, 'x.bin');
    assert.equal(split.count, 2);
    assert.deepEqual([...split.labels], [7, 2]);
    assert.equal(split.pixels[0], 200);
    assert.equal(split.pixels[2 * imageBytes - 1], 99);
  });

  test('rejects an empty file', () => {
    assert.throws(() => parseCifar10Records(new Uint8Array(0), 'empty.bin'), /empty\.bin.*empty/);
  });

  test('rejects a truncated file, saying by how much the last record is short', () => {
    assert.throws(
      () => parseCifar10Records(new Uint8Array(3 * recordBytes - 10), 'data_batch_2.bin'),
      (err: Error) =>
        /data_batch_2\.bin/.test(err.message) &&
        err.message.includes(`${3 * recordBytes - 10} bytes`) &&
        /10 bytes short/.test(err.message),
    );
  });

  test('rejects a label outside 0..9, naming the record and the value', () => {
    const bytes = new Uint8Array(4 * recordBytes);
    bytes[2 * recordBytes] = 10;
    assert.throws(() => parseCifar10Records(bytes, 'test_batch.bin'), /test_batch\.bin: record 2 has label 10/);
  });
});

describe('loadCifar10 on corrupted copies', () => {
  const keep = 20;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chorus-data-corrupt-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A small valid copy: the first `keep` real records of every file. */
  async function writeSmallCopy(): Promise<void> {
    for (const name of CIFAR10_FILES) {
      const bytes = await readFile(join(CIFAR_DIR, name));
      await writeFile(join(dir, name), bytes.subarray(0, keep * recordBytes));
    }
  }

  test('a small valid copy loads', async () => {
    await writeSmallCopy();
    const { train, test: testSplit } = await loadCifar10(dir);
    assert.equal(train.count, 5 * keep);
    assert.equal(testSplit.count, keep);
    assert.deepEqual([...train.labels.subarray(0, 5)], [6, 9, 9, 4, 1]);
  });

  test('a truncated file is named with its size', async () => {
    await writeSmallCopy();
    const path = join(dir, 'data_batch_3.bin');
    const bytes = await readFile(path);
    await writeFile(path, bytes.subarray(0, bytes.length - 100));
    await assert.rejects(loadCifar10(dir), (err: Error) => {
      assert.match(err.message, /data_batch_3\.bin/);
      assert.match(err.message, new RegExp(`${keep * recordBytes - 100} bytes`));
      assert.match(err.message, /100 bytes short/);
      return true;
    });
  });

  test('a bad label byte is named with its record', async () => {
    await writeSmallCopy();
    const path = join(dir, 'test_batch.bin');
    const bytes = await readFile(path);
    bytes[7 * recordBytes] = 200;
    await writeFile(path, bytes);
    await assert.rejects(loadCifar10(dir), /test_batch\.bin: record 7 has label 200/);
  });

  test('a missing file is named, with how to get the data', async () => {
    await writeSmallCopy();
    await unlink(join(dir, 'data_batch_5.bin'));
    await assert.rejects(loadCifar10(dir), (err: Error) => {
      assert.match(err.message, /data_batch_5\.bin/);
      assert.match(err.message, /--data DIR/);
      assert.ok(err.message.includes(CIFAR10.archiveUrl));
      return true;
    });
  });
});
