/** Registers the WASM kernels Chorus needs for training (filled in by the kernels work). */
export function registerWasmTrainingKernels(): void {}
