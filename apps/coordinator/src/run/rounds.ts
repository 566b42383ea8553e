import { gatherExamples, type Cifar10 } from '@chorus/data';
import type { WeightLayout } from '@chorus/model/core';
import { PROTOCOL_VERSION, type GradientCodec } from '@chorus/protocol';
import type { StepBatch } from '@chorus/train/core';
import { EvalTally, type EvalShardResult } from './eval-tally.js';
import { evaluationPlanner, trainingPlanner } from './planners.js';
import { StepReducer, type LowRankStep, type ReducibleShard, type ReductionBuffers } from './reducer.js';
import { ShardRound, type RoundPort } from './shard-round.js';

/** The round port without `send`: what differs between the two kinds of round is what a shard carries. */
export type SharedPort = Omit<RoundPort, 'send'>;

/** A training step as a round: each shard is an assign of its examples, the sink the step reducer. */
export function trainingRound(input: {
  step: number;
  batch: StepBatch;
  batchSize: number;
  bnGroup: number;
  layout: WeightLayout;
  /** The run's codec: the gradients arrive in it and are summed from it. */
  codec: GradientCodec;
  /** The coordinator's reduction buffers, reused every step. */
  buffers: ReductionBuffers;
  data: Cifar10;
  port: SharedPort;
  /** Low-rank runs: the step's plan, side and fixed factors (the gradients are projections). */
  lowRank?: LowRankStep;
}): { round: ShardRound<ReducibleShard>; reducer: StepReducer } {
  const { step, batch } = input;
  const reducer = new StepReducer(input.layout, input.batchSize, input.codec, input.buffers, input.lowRank);
  const round = new ShardRound<ReducibleShard>({
    label: `step ${step}`,
    replyName: 'gradient',
    size: input.batchSize,
    sink: reducer,
    plan: trainingPlanner(input.bnGroup),
    port: {
      ...input.port,
      send(worker, shard) {
        const indices = batch.indices.subarray(shard.start, shard.end);
        const { pixels, labels } = gatherExamples(input.data.train, indices);
        worker.conn?.send({ type: 'assign', v: PROTOCOL_VERSION, step, version: step, shardId: shard.id, indices, labels, pixels, augmentSeed: batch.augmentSeed ?? -1 });
      },
    },
  });
  return { round, reducer };
}

/** An evaluation as a round: the first `count` test images, in pieces of at most `pieceSize`. */
export function evaluationRound(input: {
  evalId: number;
  version: number;
  count: number;
  pieceSize: number;
  data: Cifar10;
  port: SharedPort;
}): { round: ShardRound<EvalShardResult>; tally: EvalTally } {
  const { evalId, version } = input;
  const tally = new EvalTally(input.count);
  const round = new ShardRound<EvalShardResult>({
    label: `evaluation ${evalId}`,
    size: input.count,
    sink: tally,
    plan: evaluationPlanner(input.pieceSize),
    port: {
      ...input.port,
      send(worker, shard) {
        const indices = Int32Array.from({ length: shard.end - shard.start }, (_, i) => shard.start + i);
        const { pixels, labels } = gatherExamples(input.data.test, indices);
        worker.conn?.send({ type: 'evaluate', v: PROTOCOL_VERSION, evalId, shardId: shard.id, version, labels, pixels });
      },
    },
  });
  return { round, tally };
}
