export * from './optimizer.js';
export * from './lr-schedule.js';
export * from './bn-stats.js';
export * from './replica.js';
export * from './training-config.js';
export * from './master-state.js';
