export * from './train-loop.js';
export * from './micro-batch.js';
