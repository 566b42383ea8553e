import { buildGraph, getPreset, initialParams, weightLayout, type ResNetV2Spec } from '@chorus/model';
import { Replica } from '@chorus/train';

export interface SpeedOptions {
  /** Most examples per forward/backward pass, as the worker will train. */
  microBatch: number;
  /** Examples per measured step (default 8: one step stays short even on a software GPU). */
  examples?: number;
  /** Timed steps stop once this much time has gone by (default 1000 ms) ... */
  minMs?: number;
  /** ... or after this many steps (default 4). */
  maxSteps?: number;
  now?: () => number;
}

/**
 * Images per second of a real training step (forward, backward, gradients read back) of this
 * model on the current tfjs backend: one untimed step first (GPU backends compile their shaders
 * then), then timed steps of the same size (a new batch size would compile new shaders). A few
 * seconds at most on a CPU; it is what the backend choice compares. A small step understates a
 * GPU a little (less parallelism than a 128-image shard), never in a GPU's disfavour enough to
 * lose against a CPU it really beats.
 */
export async function measureTrainingSpeed(spec: ResNetV2Spec, options: SpeedOptions): Promise<number> {
  const n = options.examples ?? 8;
  const now = options.now ?? (() => performance.now());
  const layout = weightLayout(buildGraph(spec));
  const replica = new Replica(spec, { microBatch: Math.max(1, Math.min(n, options.microBatch)), bnGroup: n });
  try {
    replica.setParams(initialParams(layout, 1));
    const size = spec.inputShape[0] * spec.inputShape[1] * spec.inputShape[2];
    const images = new Float32Array(n * size);
    // Deterministic pseudo-random pixels (a linear congruential sequence), roughly unit scale.
    let state = 12345;
    for (let i = 0; i < images.length; i++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      images[i] = state / 2 ** 31 - 1;
    }
    const labels = Uint8Array.from({ length: n }, (_, i) => i % spec.classes);
    await replica.computeGradients(images, labels);
    const start = now();
    let steps = 0;
    const minMs = options.minMs ?? 1000;
    const maxSteps = options.maxSteps ?? 4;
    do {
      await replica.computeGradients(images, labels);
      steps++;
    } while (steps < maxSteps && now() - start < minMs);
    return (steps * n * 1000) / Math.max(now() - start, 1e-3);
  } finally {
    replica.dispose();
  }
}

/** The model a coordinator trains, by preset name; the default preset when it is not known. */
export function specForPreset(preset: string | null | undefined): { preset: string; spec: ResNetV2Spec } {
  try {
    if (preset) return { preset, spec: getPreset(preset) };
  } catch {
    // An unknown name (a newer coordinator): measure on the default model instead.
  }
  return { preset: 'resnet20v2', spec: getPreset('resnet20v2') };
}
