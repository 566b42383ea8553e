// The run: the loop, its rounds of shards, the workers, the arithmetic's bookkeeping.
export * from './run/coordinator.js';
export * from './run/fleet.js';
export * from './run/shard-round.js';
export * from './run/eval-tally.js';
export * from './run/membership.js';
export * from './run/reducer.js';
export * from './run/run-config.js';
export * from './run/scheduler.js';
// Hosting: the HTTP and WebSocket server and the pages it serves.
export * from './http/server.js';
export * from './http/connection.js';
export * from './http/monitor.js';
export * from './http/browser-routes.js';
export * from './http/dashboard-routes.js';
export * from './http/static-bundle.js';
// Persistence.
export * from './store/checkpoint.js';
export * from './store/export.js';
// Operations.
export * from './ops/logger.js';
export * from './ops/metrics.js';
export * from './ops/run-log.js';
