import type { z } from 'zod';
import { decodeFrame } from './codec.js';
import { ProtocolError, quote } from './errors.js';
import { MAX_FRAME_BYTES, type ValidationLimits } from './limits.js';
import { MESSAGE_TYPES, PROTOCOL_VERSION, type ErrorCode, type Message, type MessageType } from './messages.js';
import { MESSAGE_SCHEMAS } from './schemas.js';
import { codecOfValues, type CodecName } from './gradient-codec.js';
import { sideOfStep } from './low-rank.js';

/**
 * Decodes and validates one received frame. Everything a handler reads from the result has
 * been checked, so handlers can trust it with training state; anything else throws a
 * ProtocolError whose code says how to answer the peer.
 */
export function parseMessage(frame: Uint8Array, limits: ValidationLimits = {}): Message {
  const maxBytes = limits.maxFrameBytes ?? MAX_FRAME_BYTES;
  if (frame.byteLength > maxBytes) {
    throw new ProtocolError('too-large', `frame is ${frame.byteLength} bytes; the limit is ${maxBytes}`);
  }
  return validateMessage(decodeFrame(frame), limits);
}

/**
 * Checks a decoded message in order: known type, same protocol version, then every field,
 * then sizes against what the receiver knows of the run. Returns a new object holding only
 * the known fields (typed arrays are not copied); unknown fields are dropped, see schemas.ts.
 */
export function validateMessage(value: unknown, limits: ValidationLimits = {}): Message {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProtocolError('malformed', 'a message must be a map of fields');
  }
  const { type, v } = value as Record<string, unknown>;
  if (typeof type !== 'string') throw new ProtocolError('malformed', 'message has no type');
  if (!isMessageType(type)) throw new ProtocolError('unknown-type', `unknown message type ${quote(type)}`);
  if (v !== PROTOCOL_VERSION) {
    throw new ProtocolError('bad-version', `${type} speaks protocol version ${quote(v)}; this side speaks version ${PROTOCOL_VERSION}`);
  }

  let result: z.ZodSafeParseResult<Message>;
  try {
    result = MESSAGE_SCHEMAS[type].safeParse(value, { error: describeIssue });
  } catch (error) {
    // A refinement met a shape it did not expect; that is still the peer's malformed message.
    throw new ProtocolError('malformed', `invalid ${type}: ${(error as Error).message}`, { cause: error });
  }
  if (!result.success) throw issueError(type, result.error.issues);
  checkLimits(result.data, limits);
  return result.data;
}

export function isMessageType(type: string): type is MessageType {
  return (MESSAGE_TYPES as readonly string[]).includes(type);
}

/** Zod says "expected string, received undefined" for a missing field; say "missing". */
function describeIssue(issue: { code?: string; input?: unknown }): string | undefined {
  return issue.code === 'invalid_type' && issue.input === undefined ? 'missing' : undefined;
}

function issueError(type: MessageType, issues: readonly z.core.$ZodIssue[]): ProtocolError {
  const [first] = issues;
  const where = first.path.length ? `${type}.${formatPath(first.path)}` : type;
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  const code = (first.code === 'custom' && (first.params as { code?: ErrorCode } | undefined)?.code) || 'malformed';
  return new ProtocolError(code, `invalid ${where}: ${first.message}${more}`);
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.map((key, i) => (typeof key === 'number' ? `[${key}]` : `${i ? '.' : ''}${String(key)}`)).join('');
}

function checkLimits(msg: Message, limits: ValidationLimits): void {
  switch (msg.type) {
    case 'gradient':
      expectCodec('bad-gradient', 'gradient.gradient', msg.gradient, limits.codec);
      if (limits.lowRank) {
        const side = sideOfStep(msg.step);
        expectLength('bad-gradient', 'gradient.gradient', msg.gradient.length, limits.lowRank.payloadLength(side), `low-rank payload length on a ${side} step`);
      } else {
        expectLength('bad-gradient', 'gradient.gradient', msg.gradient.length, limits.paramCount, 'parameter count');
      }
      expectLength('bad-gradient', 'gradient.bnMoments', msg.bnMoments.length, limits.bnStatCount, 'BatchNorm statistic count');
      atMost('bad-gradient', 'gradient.count', msg.count, limits.maxShardExamples);
      break;
    case 'update': {
      // fp32 runs send full params; the compressed codecs a delta in their own dtype. A delta of
      // float32s is no fp32 update: a worker holds no public weights to add it to.
      const [name, values] = msg.params ? ['update.params', msg.params] : ['update.delta', msg.delta!];
      if (limits.codec !== undefined && (msg.params !== undefined) !== (limits.codec === 'fp32')) {
        throw new ProtocolError('malformed', `${name} in an ${limits.codec} run, which updates by ${limits.codec === 'fp32' ? 'full params' : 'delta'}`);
      }
      expectCodec('malformed', name, values, limits.codec);
      expectLength('malformed', name, values.length, limits.paramCount, 'parameter count');
      expectLength('malformed', 'update.bnStats', msg.bnStats.length, limits.bnStatCount, 'BatchNorm statistic count');
      if (limits.lowRank) {
        if (!msg.factors) throw new ProtocolError('malformed', 'update.factors is missing; a low-rank run sends the next step\'s factors with every update');
        expectLength('malformed', 'update.factors', msg.factors.length, limits.lowRank.factorLength(sideOfStep(msg.version)), 'factor length');
      } else if (msg.factors && limits.paramCount !== undefined) {
        throw new ProtocolError('malformed', 'update.factors in a run without low-rank gradients');
      }
      // A step has at most one shard an example.
      if (msg.counted && limits.maxShardExamples !== undefined && msg.counted.length > limits.maxShardExamples) {
        throw new ProtocolError('malformed', `update.counted names ${msg.counted.length} shards; a step has at most ${limits.maxShardExamples}`);
      }
      break;
    }
    // A shard over the cap is refused for its size, like an oversized frame: the receiver
    // could not hold it, though nothing about it is malformed.
    case 'assign':
    case 'evaluate':
      atMost('too-large', `${msg.type} shard`, msg.labels.length, limits.maxShardExamples);
      break;
    case 'evalResult':
      atMost('malformed', 'evalResult.count', msg.count, limits.maxShardExamples);
      break;
    default:
      break;
  }
}

/** A payload in another codec's dtype would be summed as garbage: refuse it by name. */
function expectCodec(code: ErrorCode, what: string, values: unknown, expected: CodecName | undefined): void {
  if (expected === undefined) return;
  const got = codecOfValues(values);
  if (got !== expected) throw new ProtocolError(code, `${what} is encoded as ${got ?? 'nothing known'}; this run's codec is ${expected}`);
}

function expectLength(code: ErrorCode, what: string, got: number, expected: number | undefined, of: string): void {
  if (expected !== undefined && got !== expected) {
    throw new ProtocolError(code, `${what} has ${got} elements; expected ${expected} (the run's ${of})`);
  }
}

function atMost(code: ErrorCode, what: string, got: number, max: number | undefined): void {
  if (max !== undefined && got > max) {
    throw new ProtocolError(code, `${what} has ${got} examples; at most ${max} are allowed`);
  }
}
