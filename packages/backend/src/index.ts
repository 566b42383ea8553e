export { registerWasmTrainingKernels } from './wasm/register.js';
export { checkTrainingStep } from './self-test.js';
export { defaultMicroBatch } from './micro-batch.js';
export { chooseBackend, describeCandidate, formatRate, measurements } from './choose.js';
export type { BackendMeasurement, CandidateResult, Choice, ChooseOptions } from './choose.js';
