export * from './train-loop.js';
