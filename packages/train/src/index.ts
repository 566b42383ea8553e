export * from './core.js';
export * from './replica.js';
