export { registerWasmTrainingKernels } from './wasm/register.js';
export { checkTrainingStep } from './self-test.js';
export { defaultMicroBatch } from './micro-batch.js';
