export * from './paths.js';
export * from './load.js';
export * from './progress.js';
export * from './download.js';
export * from './temp-dir.js';
export * from './ensure.js';
