export * from './transport.js';
export * from './worker.js';
export * from './backoff.js';
export * from './shard-input.js';
export * from './measure.js';
