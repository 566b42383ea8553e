export * from './cli-options.js';
