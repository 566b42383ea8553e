export * from './ws-transport.js';
