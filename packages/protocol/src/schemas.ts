/**
 * The shape of every message, as zod schemas: what each field must be on its own and what
 * must hold between fields of one message. Checks that need to know the run (parameter
 * counts, shard caps) live in validate.ts, since those numbers arrive at runtime.
 *
 * Issues carry `params.code` when they deserve an ErrorCode other than 'malformed'.
 */
import { z } from 'zod';
import type {
  Assign,
  Bye,
  ErrorMessage,
  EvalResult,
  Evaluate,
  GradientMessage,
  Heartbeat,
  Hello,
  Message,
  MessageType,
  RunDescription,
  Update,
  Welcome,
  WorkerRuntime,
} from './messages.js';
import { ERROR_CODES, PROTOCOL_VERSION, type ErrorCode } from './messages.js';
import { firstNonFinite } from './finite.js';
import { CODEC_NAMES, payloadProblem } from './gradient-codec.js';
import { EXAMPLE_BYTES, FEATURE_LIMITS, MAX_LOW_RANK, MAX_SPEC_DEPTH, NUM_CLASSES, RUNTIME_LIMITS, STRING_LIMITS } from './limits.js';

export { firstNonFinite };

type Ctx = z.RefinementCtx;

function fail(ctx: Ctx, message: string, code?: ErrorCode, path?: PropertyKey[]): void {
  ctx.addIssue({ code: 'custom', message, ...(code ? { params: { code } } : {}), ...(path ? { path } : {}) });
}

// z.int() is a safe integer; z.number() already refuses NaN and +-Infinity.
const counter = z.int().nonnegative();
const positive = z.int().positive();
const text = (max: number) => z.string().max(max);

function typedArray<T>(ctor: abstract new (...args: never[]) => T, name: string) {
  return z.custom<T>((value) => value instanceof ctor, { message: `expected a ${name}` });
}
const float32s = typedArray(Float32Array, 'Float32Array');
const int32s = typedArray(Int32Array, 'Int32Array');
const uint8s = typedArray(Uint8Array, 'Uint8Array');

const codecValues = z.custom<Float32Array | Uint16Array | Int8Array>(
  (value) => value instanceof Float32Array || value instanceof Uint16Array || value instanceof Int8Array,
  { message: 'expected a Float32Array (fp32), Uint16Array (fp16) or Int8Array (int8)' },
);

/** An encoded vector must be sound on its own (gradient-codec.ts' payloadProblem, the one check). */
function checkEncoded(values: Float32Array | Uint16Array | Int8Array, scales: Float32Array | undefined, ctx: Ctx, code: ErrorCode, key: string): void {
  const problem = payloadProblem({ values, ...(scales ? { scales } : {}) });
  if (problem) fail(ctx, problem.message, code, [problem.field === 'scales' ? 'scales' : key]);
}

/** A Float32Array with no NaN or infinity, which would poison every weight it touches. */
const finiteFloats = (code: ErrorCode) =>
  float32s.superRefine((values, ctx) => {
    const i = firstNonFinite(values);
    if (i >= 0) fail(ctx, `element ${i} of ${values.length} is ${values[i]}`, code);
  });

/**
 * Why `value` is not plain JSON data (finite numbers, strings, booleans, null, arrays, plain
 * objects), or null when it is. undefined passes: JSON.stringify would drop it, and msgpack
 * carries an optional field left undefined in the sender's object.
 */
export function jsonProblem(value: unknown, depth = 0, path = 'spec'): string | null {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return null;
    case 'number':
      return Number.isFinite(value) ? null : `${path} is ${value}`;
    case 'object': {
      if (depth >= MAX_SPEC_DEPTH) return `${path} nests deeper than ${MAX_SPEC_DEPTH} levels`;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const problem = jsonProblem(value[i], depth + 1, `${path}[${i}]`);
          if (problem) return problem;
        }
        return null;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return `${path} is a ${proto?.constructor?.name ?? 'object'}, not JSON data`;
      for (const [key, item] of Object.entries(value)) {
        const problem = jsonProblem(item, depth + 1, `${path}.${key}`);
        if (problem) return problem;
      }
      return null;
    }
    default:
      return `${path} is a ${typeof value}, not JSON data`;
  }
}

const jsonData = z.unknown().superRefine((value, ctx) => {
  if (value === undefined) return fail(ctx, 'missing');
  const problem = jsonProblem(value);
  if (problem) fail(ctx, problem);
});

/** Shared by assign and evaluate: one 3072-byte image per label, labels in 0..9. */
function checkExamples(labels: Uint8Array, pixels: Uint8Array, ctx: Ctx): void {
  if (labels.length === 0) return fail(ctx, 'the shard has no examples', undefined, ['labels']);
  if (pixels.length !== EXAMPLE_BYTES * labels.length) {
    return fail(ctx, `${pixels.length} bytes for ${labels.length} examples; expected ${EXAMPLE_BYTES * labels.length}`, undefined, ['pixels']);
  }
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] >= NUM_CLASSES) return fail(ctx, `label ${i} is ${labels[i]}; CIFAR-10 labels are 0..${NUM_CLASSES - 1}`, undefined, ['labels']);
  }
}

function checkCorrect(msg: { count: number; correct: number }, ctx: Ctx): void {
  if (msg.correct > msg.count) fail(ctx, `${msg.correct} correct out of ${msg.count} examples`, undefined, ['correct']);
}

const version = z.literal(PROTOCOL_VERSION);

/** runtime.backends: a short list of short entries (a worker's chain has four or five). */
const BACKEND_LIMITS = { maxEntries: 8, name: 32, skipped: 300, maxImagesPerSecond: 1e7 } as const;
const backendMeasurement = z.object({
  name: text(BACKEND_LIMITS.name).min(1),
  imagesPerSecond: z.number().nonnegative().max(BACKEND_LIMITS.maxImagesPerSecond).nullable(),
  skipped: text(BACKEND_LIMITS.skipped).optional(),
});

const runtime: z.ZodType<WorkerRuntime> = z.object({
  kind: z.enum(['node', 'browser']),
  backend: text(STRING_LIMITS.runtime),
  device: text(STRING_LIMITS.runtime),
  cores: positive.max(RUNTIME_LIMITS.maxCores),
  microBatch: positive.max(RUNTIME_LIMITS.maxMicroBatch),
  agent: text(STRING_LIMITS.runtime),
  backends: z.array(backendMeasurement).max(BACKEND_LIMITS.maxEntries).optional(),
});

const hello: z.ZodType<Hello> = z.object({
  type: z.literal('hello'),
  v: version,
  token: text(STRING_LIMITS.token),
  runtime,
  workerId: text(STRING_LIMITS.workerId).min(1).optional(),
  // Names this side does not know are kept (a newer worker's), so only their form and number are
  // bounded: short ASCII names, so the largest hello still fits the pre-hello frame limit.
  features: z.array(z.string().max(FEATURE_LIMITS.name).regex(/^[a-z0-9][a-z0-9-]*$/)).max(FEATURE_LIMITS.maxEntries).optional(),
});

const run: z.ZodType<RunDescription> = z.object({
  preset: text(STRING_LIMITS.text),
  spec: jsonData,
  paramCount: counter,
  bnStatCount: counter,
  bnGroup: positive,
  codec: z.enum(CODEC_NAMES),
  lowRank: z.int().min(1).max(MAX_LOW_RANK).optional(),
  heartbeatMs: z.number().positive(),
});

const welcome: z.ZodType<Welcome> = z
  .object({
    type: z.literal('welcome'),
    v: version,
    workerId: text(STRING_LIMITS.workerId).min(1),
    run,
    version: counter,
    params: finiteFloats('malformed'),
    bnStats: finiteFloats('malformed'),
    factors: finiteFloats('malformed').optional(),
  })
  .superRefine((msg, ctx) => {
    if ((msg.run.lowRank === undefined) !== (msg.factors === undefined)) {
      fail(ctx, 'a low-rank run (run.lowRank) and factors come together', undefined, ['factors']);
    }
    // welcome describes its own run, so its arrays are checked against that, not the limits.
    if (msg.params.length !== msg.run.paramCount) {
      fail(ctx, `${msg.params.length} elements; run.paramCount says ${msg.run.paramCount}`, undefined, ['params']);
    }
    if (msg.bnStats.length !== msg.run.bnStatCount) {
      fail(ctx, `${msg.bnStats.length} elements; run.bnStatCount says ${msg.run.bnStatCount}`, undefined, ['bnStats']);
    }
  });

const assign: z.ZodType<Assign> = z
  .object({
    type: z.literal('assign'),
    v: version,
    step: counter,
    version: counter,
    shardId: counter,
    indices: int32s,
    labels: uint8s,
    pixels: uint8s,
    // Seeds are uint32 (see @chorus/data's rng); workers read a negative one as "no augmentation".
    augmentSeed: z.int().min(-(2 ** 31)).max(2 ** 32 - 1),
  })
  .superRefine((msg, ctx) => {
    if (msg.indices.length !== msg.labels.length) {
      return fail(ctx, `${msg.indices.length} indices for ${msg.labels.length} labels`, undefined, ['indices']);
    }
    for (let i = 0; i < msg.indices.length; i++) {
      if (msg.indices[i] < 0) return fail(ctx, `index ${i} is ${msg.indices[i]}`, undefined, ['indices']);
    }
    checkExamples(msg.labels, msg.pixels, ctx);
  });

const gradient: z.ZodType<GradientMessage> = z
  .object({
    type: z.literal('gradient'),
    v: version,
    step: counter,
    shardId: counter,
    count: positive,
    lossSum: z.number().nonnegative(),
    correct: counter,
    computeMs: z.number().nonnegative(),
    gradient: codecValues,
    scales: float32s.optional(),
    bnMoments: finiteFloats('bad-gradient'),
  })
  .superRefine((msg, ctx) => {
    checkCorrect(msg, ctx);
    checkEncoded(msg.gradient, msg.scales, ctx, 'bad-gradient', 'gradient');
  });

const update: z.ZodType<Update> = z
  .object({
    type: z.literal('update'),
    v: version,
    version: counter,
    params: finiteFloats('malformed').optional(),
    delta: codecValues.optional(),
    scales: float32s.optional(),
    bnStats: finiteFloats('malformed'),
    factors: finiteFloats('malformed').optional(),
    counted: int32s.optional(),
  })
  .superRefine((msg, ctx) => {
    if ((msg.params === undefined) === (msg.delta === undefined)) {
      return fail(ctx, 'needs exactly one of params (fp32) and delta (fp16, int8)');
    }
    if (msg.delta) checkEncoded(msg.delta, msg.scales, ctx, 'malformed', 'delta');
    else if (msg.scales) fail(ctx, 'full params carry no scales', undefined, ['scales']);
  });

const evaluate: z.ZodType<Evaluate> = z
  .object({
    type: z.literal('evaluate'),
    v: version,
    evalId: counter,
    shardId: counter,
    version: counter,
    labels: uint8s,
    pixels: uint8s,
  })
  .superRefine((msg, ctx) => checkExamples(msg.labels, msg.pixels, ctx));

const evalResult: z.ZodType<EvalResult> = z
  .object({
    type: z.literal('evalResult'),
    v: version,
    evalId: counter,
    shardId: counter,
    count: positive,
    lossSum: z.number().nonnegative(),
    correct: counter,
  })
  .superRefine(checkCorrect);

const heartbeat: z.ZodType<Heartbeat> = z.object({
  type: z.literal('heartbeat'),
  v: version,
  time: z.number().nonnegative(),
  hidden: z.boolean().optional(),
});

const error: z.ZodType<ErrorMessage> = z.object({
  type: z.literal('error'),
  v: version,
  code: z.enum(ERROR_CODES),
  message: text(STRING_LIMITS.text),
});

const bye: z.ZodType<Bye> = z.object({
  type: z.literal('bye'),
  v: version,
  reason: text(STRING_LIMITS.text),
});

/**
 * One schema per message type. z.object strips unknown keys, so fields a newer peer adds
 * (within the same protocol version) are dropped rather than refused, and nothing downstream
 * ever sees a field that was not checked.
 */
export const MESSAGE_SCHEMAS: { readonly [K in MessageType]: z.ZodType<Extract<Message, { type: K }>> } = {
  hello,
  welcome,
  assign,
  gradient,
  update,
  evaluate,
  evalResult,
  heartbeat,
  error,
  bye,
};
