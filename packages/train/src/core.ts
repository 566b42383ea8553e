/**
 * Training state without TensorFlow.js: the optimizer, learning-rate schedule, BatchNorm
 * statistics, the run's configuration and the master state. What the coordinator needs;
 * importing it does not load tfjs (the Replica does).
 */
export * from './optimizer.js';
export * from './lr-schedule.js';
export * from './bn-stats.js';
export * from './training-config.js';
export * from './master-state.js';
export { masterKernelsAvailable, setMasterKernelsEnabled, simdMean } from './simd/master-kernels.js';
