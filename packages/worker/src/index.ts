export * from './transport.js';
export * from './worker.js';
export * from './shard-input.js';
export * from './compute-shard.js';
export * from './measure.js';
export * from './replica-pool.js';
export * from './uncounted-shards.js';
