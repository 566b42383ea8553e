/** Where a worker runs: a tab shares its machine with a browser that must stay responsive. */
export type Host = 'node' | 'browser';

/**
 * Most examples a backend runs through the model at once, by default. WASM's 32-bit heap caps
 * at 4 GiB: resnet20v2 at batch 64 needs about 2.3 GiB and batch 128 fails, so it gets 32. GPU
 * backends take more, but a tab's GPU also draws the page (64). Plain JavaScript in Node gets
 * 16; a tab keeps 32, as it always had.
 */
const DEFAULTS: Record<Host, { wasm: number; cpu: number; gpu: number }> = {
  node: { wasm: 32, cpu: 16, gpu: 256 },
  browser: { wasm: 32, cpu: 32, gpu: 64 },
};

export function defaultMicroBatch(tfBackend: string, host: Host = 'node'): number {
  const d = DEFAULTS[host];
  return tfBackend === 'wasm' ? d.wasm : tfBackend === 'cpu' ? d.cpu : d.gpu;
}

/** The micro-batch a worker trains with: what the user asked for (whole examples), else the default. */
export function microBatchFor(tfBackend: string, host: Host, requested?: number | null): number {
  return requested == null ? defaultMicroBatch(tfBackend, host) : Math.floor(requested);
}
