import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, unlink } from 'node:fs/promises';
import { syncDir, writeFileDurably } from './durable-fs.js';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { CHANNEL_MEAN, CHANNEL_STD, CIFAR10 } from '@chorus/data';
import { buildGraph, createResNetV2, weightLayout, writeLayersModelWeights, type ResNetV2Spec } from '@chorus/model';

export interface ExportResult {
  /** Path of the written model.json. */
  modelJson: string;
  /** Paths of the binary weight file(s) that model.json references. */
  weightsFiles: string[];
}

/** What the export says about itself (model.json's userDefinedMetadata.chorus). */
export interface ExportInfo {
  preset: string;
  /** Training steps behind these weights. */
  step: number;
  /** Latest test-set accuracy, and on how many test images; absent when never evaluated. */
  testAccuracy?: { accuracy: number; examples: number; step: number };
}

/**
 * How to feed the exported model. Its first layer standardises with the training set's
 * channel statistics, so a caller gives raw pixels, exactly as tf.browser.fromPixels returns
 * them; these numbers are recorded for readers who need to know, not for callers to apply.
 */
export function exportMetadata(info: ExportInfo): { chorus: object } {
  return {
    chorus: {
      ...info,
      input: {
        layout: 'NHWC [n, 32, 32, 3], channels R, G, B',
        values: 'raw pixel values 0..255 as float32 (tf.browser.fromPixels(img).toFloat()); the model normalises them itself',
        normalizationInModel: { mean: [...CHANNEL_MEAN], std: [...CHANNEL_STD] },
      },
      output: 'softmax probabilities over classNames, in this order',
      classNames: [...CIFAR10.classNames],
    },
  };
}

const WEIGHTS_PATTERN = /^weights-[0-9a-f]{16}\.bin$/;

/** Writes files atomically: each to a temp name in `dir`, fsync'd, then renamed in the given order. */
async function writeAtomically(dir: string, files: { name: string; chunks: readonly Uint8Array[] }[]): Promise<void> {
  const tag = `${process.pid}.${randomBytes(6).toString('hex')}`;
  const temps = files.map((f) => ({ ...f, temp: join(dir, `.${f.name}.${tag}.tmp`) }));
  try {
    for (const f of temps) await writeFileDurably(f.temp, f.chunks);
    for (const f of temps) await rename(f.temp, join(dir, f.name));
  } catch (err) {
    for (const f of temps) await unlink(f.temp).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
}

/**
 * Saves the model, taking raw pixels, in the TensorFlow.js Layers format (model.json plus one binary weights file)
 * into `dir`, loadable with `tf.loadLayersModel('<url>/model.json')` or tfjs-node's file://.
 *
 * The write is atomic for readers of `dir`: the weights file is named after its content hash
 * (`weights-<sha256 prefix>.bin`) and renamed into place first, then model.json (which refers
 * to it) replaces the previous model.json in one rename. A reader therefore always sees a
 * complete model.json whose weights file exists. Weight files of earlier exports that the new
 * model.json no longer refers to are removed afterwards.
 */
export async function exportLayersModel(
  dir: string,
  spec: ResNetV2Spec,
  params: Float32Array,
  bnStats: Float32Array,
  info: ExportInfo,
): Promise<ExportResult> {
  const graph = buildGraph(spec);
  const layout = weightLayout(graph);
  const model = createResNetV2(spec, graph, { inputNormalization: { mean: CHANNEL_MEAN, std: CHANNEL_STD } });
  let artifacts: tf.io.ModelArtifacts;
  try {
    writeLayersModelWeights(model, layout, params, bnStats);
    let captured: tf.io.ModelArtifacts | undefined;
    await model.save(
      tf.io.withSaveHandler(async (a) => {
        captured = a;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    if (!captured) throw new Error('export: the model produced no artifacts');
    artifacts = captured;
  } finally {
    model.dispose();
  }

  const data = artifacts.weightData;
  const buffers = data === undefined ? [] : Array.isArray(data) ? data : [data];
  const chunks = buffers.map((b) => new Uint8Array(b));
  const hash = createHash('sha256');
  for (const c of chunks) hash.update(c);
  const weightsName = `weights-${hash.digest('hex').slice(0, 16)}.bin`;

  const modelJson: tf.io.ModelJSON = {
    modelTopology: artifacts.modelTopology as tf.io.ModelJSON['modelTopology'],
    format: artifacts.format ?? 'layers-model',
    generatedBy: artifacts.generatedBy ?? `TensorFlow.js tfjs-layers v${tf.version_layers}`,
    convertedBy: artifacts.convertedBy ?? null,
    weightsManifest: [{ paths: [`./${weightsName}`], weights: artifacts.weightSpecs ?? [] }],
  };
  if (artifacts.trainingConfig != null) modelJson.trainingConfig = artifacts.trainingConfig;
  modelJson.userDefinedMetadata = { ...artifacts.userDefinedMetadata, ...exportMetadata(info) };

  const target = resolve(dir);
  await mkdir(target, { recursive: true });
  await writeAtomically(target, [
    { name: weightsName, chunks },
    { name: 'model.json', chunks: [Buffer.from(JSON.stringify(modelJson), 'utf8')] },
  ]);

  for (const name of await readdir(target)) {
    if (WEIGHTS_PATTERN.test(name) && name !== weightsName) {
      await unlink(join(target, name)).catch(() => undefined);
    }
  }
  return { modelJson: join(target, 'model.json'), weightsFiles: [join(target, weightsName)] };
}
