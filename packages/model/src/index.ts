export * from './spec.js';
export * from './presets.js';
export * from './graph.js';
export * from './layout.js';
export * from './init.js';
export * from './layers-model.js';
export * from './functional.js';
