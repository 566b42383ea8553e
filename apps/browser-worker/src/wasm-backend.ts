/**
 * Loading tfjs-backend-wasm with Chorus' WASM training kernels in a Web Worker: the tab's
 * training worker (a candidate in backends.ts) and each replica worker (replica-worker.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { getThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { activateBackend, registerWasmTrainingKernels } from '@chorus/backend';

/**
 * Activates 'wasm'. `singleThreaded`: the build without threads even where the page is
 * cross-origin isolated, for replica workers (each is one of the tab's threads, so XNNPACK's
 * own thread pool would only oversubscribe the cores).
 */
export async function loadWasm(wasmPaths: string, options: { singleThreaded?: boolean } = {}): Promise<string> {
  // The .wasm files sit next to the worker scripts; without this tfjs looks for them on a CDN.
  setWasmPaths(wasmPaths);
  if (options.singleThreaded) tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  registerWasmTrainingKernels();
  await activateBackend('wasm');
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  // Threads need cross-origin isolation (the coordinator sends COOP/COEP); tfjs picks the count.
  const threaded = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  const threads = getThreadsCount();
  return `CPU (WebAssembly${simd ? ', SIMD' : ''}, ${threaded ? `threaded build, ${threads} thread${threads === 1 ? '' : 's'}` : 'single-threaded'})`;
}
