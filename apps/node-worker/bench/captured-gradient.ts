/**
 * One real resnet20v2 gradient, computed once on WASM from the run's initial weights and a
 * real augmented CIFAR-10 shard, and saved so that bench workers can send it instead of
 * computing: its values (not just its size) are what a compressed codec would see.
 *
 * File: 'CHGR', u32 paramCount, u32 bnStatCount, f32 loss per example, then the gradient
 * and the BatchNorm moments as little-endian float32.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface CapturedGradient {
  gradient: Float32Array;
  bnMoments: Float32Array;
  lossPerExample: number;
}

const MAGIC = 0x52474843; // 'CHGR'

export function readCapturedGradient(bytes: Uint8Array): CapturedGradient {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw new Error('not a captured gradient file');
  const p = view.getUint32(4, true);
  const b = view.getUint32(8, true);
  const copy = new Uint8Array(bytes.subarray(16, 16 + 4 * (p + b))); // aligned
  return {
    lossPerExample: view.getFloat32(12, true),
    gradient: new Float32Array(copy.buffer, 0, p),
    bnMoments: new Float32Array(copy.buffer, 4 * p, b),
  };
}

function encode(c: CapturedGradient): Uint8Array {
  const out = new Uint8Array(16 + 4 * (c.gradient.length + c.bnMoments.length));
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, c.gradient.length, true);
  view.setUint32(8, c.bnMoments.length, true);
  view.setFloat32(12, c.lossPerExample, true);
  out.set(new Uint8Array(c.gradient.buffer, c.gradient.byteOffset, c.gradient.byteLength), 16);
  out.set(new Uint8Array(c.bnMoments.buffer, c.bnMoments.byteOffset, c.bnMoments.byteLength), 16 + c.gradient.byteLength);
  return out;
}

/**
 * Computes the gradient of the first `count` examples of the training set (augmented with
 * seed 1) at the initial weights of seed 1, on WASM, unless `file` already holds it.
 */
export async function ensureCapturedGradient(file: string, cifarDir: string, options: { bnGroup: number; count: number }): Promise<void> {
  if (existsSync(file)) return;
  const tf = await import('@tensorflow/tfjs');
  const { selectNodeBackend } = await import('@chorus/backend/node');
  const { loadCifar10 } = await import('@chorus/data/node');
  const { PRESETS, buildGraph, initialParams, weightLayout } = await import('@chorus/model');
  const { Replica } = await import('@chorus/train');
  const { shardImages } = await import('@chorus/worker');
  tf.env().set('PROD', true);
  await selectNodeBackend({ force: 'wasm' });
  const spec = PRESETS.resnet20v2;
  const layout = weightLayout(buildGraph(spec));
  const data = await loadCifar10(cifarDir);
  const { count } = options;
  const replica = new Replica(spec, { microBatch: 32, bnGroup: options.bnGroup });
  replica.setParams(initialParams(layout, 1));
  const indices = Int32Array.from({ length: count }, (_, i) => i);
  const images = shardImages(data.train.pixels.subarray(0, count * 3072), indices, 1);
  const result = await replica.computeGradients(images, data.train.labels.subarray(0, count));
  replica.dispose();
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, encode({ gradient: result.gradient, bnMoments: result.bn.moments, lossPerExample: result.lossSum / count }));
}
