/**
 * The model without TensorFlow.js: the spec, presets, graph, weight layout and initial values.
 * What the coordinator needs; importing it does not load tfjs (15 MB of heap, and every full
 * garbage collection of a coordinator process walks it).
 */
export * from './spec.js';
export * from './presets.js';
export * from './graph.js';
export * from './layout.js';
export * from './init.js';
