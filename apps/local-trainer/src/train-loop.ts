import { augmentShard, gatherExamples, toNormalizedNHWC, type Cifar10, type Cifar10Split } from '@chorus/data';
import { MasterState, Replica, type EvalResult, type TrainingConfig } from '@chorus/train';

export interface LocalTrainingConfig extends TrainingConfig {
  microBatch: number;
  /** Evaluate on the test set every this many steps (0: only at the end). */
  evalEvery: number;
  /** How many test examples an evaluation uses (the first N of the test set). */
  evalExamples: number;
}

export interface StepReport {
  step: number;
  epoch: number;
  lr: number;
  loss: number;
  accuracy: number;
  imagesPerSecond: number;
  seconds: number;
}

export interface EvalReport extends EvalResult {
  step: number;
  accuracy: number;
  loss: number;
}

export interface TrainingHooks {
  onStep?(report: StepReport): void;
  onEval?(report: EvalReport): void;
}

export interface TrainingResult {
  params: Float32Array;
  bnStats: Float32Array;
  finalEval: EvalReport;
  seconds: number;
  steps: number;
}

/** Pixels of a set of examples as the model's input: optional seeded augmentation, then normalisation. */
export function prepareShard(split: Cifar10Split, indices: Int32Array, augmentSeed: number | null) {
  const shard = gatherExamples(split, indices);
  const pixels = augmentSeed === null ? shard.pixels : augmentShard(shard.pixels, shard.count, indices, augmentSeed);
  return { images: toNormalizedNHWC(pixels, shard.count), labels: shard.labels };
}

/**
 * Single-process synchronous SGD: the reference that distributed training is checked against.
 * The master weights, optimizer and BatchNorm running statistics are the same MasterState the
 * coordinator keeps; the replica only computes gradients.
 */
export async function trainLocally(
  config: LocalTrainingConfig,
  data: Cifar10,
  hooks: TrainingHooks = {},
  now: () => number = () => performance.now(),
): Promise<TrainingResult> {
  const replica = new Replica(config.spec, { microBatch: config.microBatch, bnGroup: config.bnGroup });
  const { layout } = replica;
  const master = new MasterState(config, layout, data.train.count);
  const { params, bnStats } = master;
  const evaluate = async (step: number): Promise<EvalReport> => {
    const count = Math.min(config.evalExamples, data.test.count);
    const indices = Int32Array.from({ length: count }, (_, i) => i);
    const { images, labels } = prepareShard(data.test, indices, null);
    const result = await replica.evaluate(images, labels, bnStats);
    const report = { ...result, step, accuracy: result.correct / result.count, loss: result.lossSum / result.count };
    hooks.onEval?.(report);
    return report;
  };
  const mean = new Float32Array(layout.paramCount);
  const start = now();
  try {
    for (let step = 0; step < config.steps; step++) {
      const stepStart = now();
      const { indices, augmentSeed } = master.batch(step);
      const { images, labels } = prepareShard(data.train, indices, augmentSeed);
      replica.setParams(params);
      const shard = await replica.computeGradients(images, labels);
      if (!Number.isFinite(shard.lossSum) || !shard.gradient.every(Number.isFinite)) {
        throw new Error(
          `training diverged at step ${step}: loss ${shard.lossSum / shard.count} or a gradient is not finite ` +
            `(lr ${master.learningRate(step)}); lower --lr or raise --warmup`,
        );
      }
      for (let i = 0; i < mean.length; i++) mean[i] = shard.gradient[i] / shard.count;
      const lr = master.apply(mean, shard.bn.moments);
      const seconds = (now() - stepStart) / 1000;
      hooks.onStep?.({
        step: step + 1,
        epoch: master.epochOf(step),
        lr,
        loss: shard.lossSum / shard.count,
        accuracy: shard.correct / shard.count,
        imagesPerSecond: shard.count / seconds,
        seconds,
      });
      // WASM resolves reads synchronously, so without this timers (progress, I/O) never run.
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (config.evalEvery > 0 && (step + 1) % config.evalEvery === 0 && step + 1 < config.steps) {
        replica.setParams(params);
        await evaluate(step + 1);
      }
    }
    replica.setParams(params);
    const finalEval = await evaluate(config.steps);
    return { params, bnStats, finalEval, seconds: (now() - start) / 1000, steps: config.steps };
  } finally {
    replica.dispose();
  }
}
