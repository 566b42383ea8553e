export { registerWasmTrainingKernels } from './wasm/register.js';
export { checkTrainingStep } from './self-test.js';
export { defaultMicroBatch, microBatchFor, type Host } from './micro-batch.js';
export { chooseBackend, describeCandidate, formatRate, measurements } from './choose.js';
export type { BackendMeasurement, CandidateResult, Choice, ChooseOptions } from './choose.js';
export { selectBackend, activateBackend, firstLine, SOFTWARE_RENDERER } from './select.js';
export type { BackendCandidate, CandidateOutcome, Loaded, SelectEvent, SelectOptions, Selection } from './select.js';
export { adapterName, isSoftwareAdapter, type AdapterInfo } from './adapter.js';
