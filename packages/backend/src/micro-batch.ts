/**
 * The default micro-batch per tfjs backend. WASM's 32-bit heap caps at 4 GiB: resnet20v2 at
 * batch 64 needs about 2.3 GiB and batch 128 fails, so it gets 32. GPU backends take more.
 */
export function defaultMicroBatch(tfBackend: string): number {
  switch (tfBackend) {
    case 'wasm':
      return 32;
    case 'cpu':
      return 16;
    default:
      return 256;
  }
}
