export * from './messages.js';
export { ProtocolError } from './errors.js';
export { closeReason, MAX_CLOSE_REASON_BYTES } from './close-reason.js';
export { encodeMessage, decodeFrame, frameType, HEADER_LENGTH_BYTES, MAX_TAIL_NAME_LENGTH, MAX_TAILS, type TailDescriptor } from './codec.js';
export { FrameWriter } from './frame-writer.js';
export type { Dtype, TailArray } from './dtypes.js';
export {
  MAX_FRAME_BYTES,
  EXAMPLE_BYTES,
  NUM_CLASSES,
  STRING_LIMITS,
  FEATURE_LIMITS,
  RUNTIME_LIMITS,
  MAX_SPEC_DEPTH,
  MAX_LOW_RANK,
  type ValidationLimits,
} from './limits.js';
export { parseMessage, validateMessage, isMessageType } from './validate.js';
export {
  type GradientCodec,
  type CodecName,
  type CodecValues,
  type EncodedVector,
  fp32Codec,
  fp16Codec,
  int8Codec,
  getGradientCodec,
  isCodecName,
  codecOfValues,
  int8BlockCount,
  GRADIENT_CODEC_NAMES,
  CODEC_NAMES,
  INT8_BLOCK,
} from './gradient-codec.js';
export { toFloat16Bits, fromFloat16Bits, FLOAT16_MAX } from './float16.js';
export { ErrorFeedback, encodeGradient } from './error-feedback.js';
export { PublicWeights, applyDelta } from './public-weights.js';
export type * from './monitor.js';
export { formatLogLine, formatLogValue, type LogFields, type LogLevel } from './log-line.js';
export { backoffDelay } from './backoff.js';
export { residentVectors, setVectorKernelsEnabled, vectorKernelsAvailable } from './simd/vector-kernels.js';
export { EmbeddedSimdModule, ResidentArrays, copyOut } from './simd/embedded-module.js';
export { setLowRankKernelsEnabled } from './simd/low-rank-kernels.js';
export { LowRankFeedback, LowRankPlan, orthonormalColumns, sideOfStep, type LowRankMatrix, type LowRankSide, type LowRankTensor } from './low-rank.js';
