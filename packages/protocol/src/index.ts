export * from './messages.js';
export { ProtocolError } from './errors.js';
export { closeReason, MAX_CLOSE_REASON_BYTES } from './close-reason.js';
export { encodeMessage, decodeFrame, HEADER_LENGTH_BYTES, MAX_TAIL_NAME_LENGTH, MAX_TAILS, type TailDescriptor } from './codec.js';
export { FrameWriter } from './frame-writer.js';
export type { Dtype, TailArray } from './dtypes.js';
export {
  MAX_FRAME_BYTES,
  EXAMPLE_BYTES,
  NUM_CLASSES,
  STRING_LIMITS,
  RUNTIME_LIMITS,
  MAX_SPEC_DEPTH,
  type ValidationLimits,
} from './limits.js';
export { parseMessage, validateMessage, isMessageType } from './validate.js';
export { type GradientCodec, fp32Codec, getGradientCodec, GRADIENT_CODEC_NAMES } from './gradient-codec.js';
export type * from './monitor.js';
export { formatLogLine, formatLogValue, type LogFields, type LogLevel } from './log-line.js';
export { backoffDelay } from './backoff.js';
