export { registerWasmTrainingKernels } from './wasm/register.js';
