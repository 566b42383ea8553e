export * from './ws-transport.js';
export { ReplicaThreadPool, splitRanges } from './threads/pool.js';
