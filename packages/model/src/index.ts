export * from './core.js';
export * from './layers-model.js';
export * from './functional.js';
