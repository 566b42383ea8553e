/**
 * The tab's backend chain, run inside the Web Worker: WebGPU, WebGL, WASM (with Chorus' WASM
 * training kernels), plain JavaScript. Like the Node chain (packages/backend/src/node), a
 * backend is accepted only after tf.getBackend() confirms it (tfjs falls back silently) and it
 * has run a real training step (checkTrainingStep).
 */
import * as tf from '@tensorflow/tfjs';
// Registers 'webgpu' when this browser has navigator.gpu (checked at import time).
import '@tensorflow/tfjs-backend-webgpu';
import { getThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { checkTrainingStep, registerWasmTrainingKernels } from '@chorus/backend';
import { BROWSER_BACKENDS, type AdapterDescription, type BackendReport, type BrowserBackendName } from './messages.js';
import { browserMicroBatch } from './options.js';

class Unavailable extends Error {}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0];
}

/** The parts of WebGPU read here; typed loosely because browsers moved fields between versions. */
interface LooseAdapter {
  info?: Record<string, unknown>;
  isFallbackAdapter?: boolean;
  requestAdapterInfo?: () => Promise<Record<string, unknown>>;
}
interface LooseGpu {
  requestAdapter(options?: { powerPreference?: string }): Promise<LooseAdapter | null>;
}

async function activate(name: string): Promise<void> {
  if (tf.findBackendFactory(name) === null) throw new Unavailable(`tfjs has no '${name}' backend registered in this browser`);
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
  } catch (error) {
    throw new Unavailable(`tf.setBackend('${name}') failed: ${describe(error)}`);
  }
  // tfjs falls back to another backend silently when one fails to initialise: check.
  if (!ok || tf.getBackend() !== name) {
    throw new Unavailable(`tf.setBackend('${name}') did not take (current backend: ${tf.getBackend() ?? 'none'})`);
  }
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** The adapter WebGPU gives tfjs (the same request tfjs-backend-webgpu makes), described. */
async function describeAdapter(gpu: LooseGpu): Promise<AdapterDescription> {
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Unavailable('WebGPU found no adapter (no usable GPU, or WebGPU is disabled in this browser)');
  const info = adapter.info ?? (adapter.requestAdapterInfo ? await adapter.requestAdapterInfo() : {});
  return {
    vendor: text(info.vendor),
    architecture: text(info.architecture),
    device: text(info.device),
    description: text(info.description),
    // Moved from GPUAdapter to GPUAdapterInfo in newer browsers.
    isFallbackAdapter: adapter.isFallbackAdapter === true || info.isFallbackAdapter === true,
  };
}

export function adapterLabel(adapter: AdapterDescription): string {
  const parts = [adapter.vendor, adapter.architecture, adapter.device, adapter.description].filter(Boolean);
  const unique = parts.filter((p, i) => parts.indexOf(p) === i);
  return `${unique.join(' ') || 'WebGPU adapter'}${adapter.isFallbackAdapter ? ' (fallback adapter: software rendering)' : ''}`;
}

async function tryWebgpu(): Promise<{ device: string; adapter: AdapterDescription }> {
  const gpu = (navigator as unknown as { gpu?: LooseGpu }).gpu;
  if (!gpu) throw new Unavailable('this browser has no WebGPU here (navigator.gpu is missing in a Web Worker)');
  const adapter = await describeAdapter(gpu);
  await activate('webgpu');
  return { device: `WebGPU: ${adapterLabel(adapter)}`, adapter };
}

interface WebglBackendLike {
  gpgpu?: { gl?: WebGL2RenderingContext | WebGLRenderingContext };
}

async function tryWebgl(): Promise<{ device: string; adapter: null }> {
  if (typeof OffscreenCanvas === 'undefined') throw new Unavailable('no OffscreenCanvas in this Web Worker, which WebGL here needs');
  await activate('webgl');
  const gl = (tf.backend() as unknown as WebglBackendLike).gpgpu?.gl;
  let renderer = '';
  if (gl) {
    const debug = gl.getExtension('WEBGL_debug_renderer_info');
    renderer = String(gl.getParameter(debug ? debug.UNMASKED_RENDERER_WEBGL : gl.RENDERER) ?? '');
  }
  return { device: `WebGL: ${renderer || 'unknown renderer'}`, adapter: null };
}

async function tryWasm(wasmPaths: string): Promise<{ device: string; adapter: null }> {
  // The .wasm files sit next to worker.js; without this tfjs looks for them on a CDN.
  setWasmPaths(wasmPaths);
  registerWasmTrainingKernels();
  await activate('wasm');
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  // Threads need cross-origin isolation (the coordinator sends COOP/COEP); tfjs picks the count.
  const threaded = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  const threads = getThreadsCount();
  return {
    device: `CPU (WebAssembly${simd ? ', SIMD' : ''}, ${threaded ? `threaded build, ${threads} thread${threads === 1 ? '' : 's'}` : 'single-threaded'})`,
    adapter: null,
  };
}

async function tryCpu(): Promise<{ device: string; adapter: null }> {
  await activate('cpu');
  return { device: 'CPU (plain JavaScript)', adapter: null };
}

export interface SelectOptions {
  /** Take only this backend, failing with the reason if it cannot be had. */
  force: BrowserBackendName | null;
  /** URL prefix where the tfjs-backend-wasm .wasm files are served (ends with '/'). */
  wasmPaths: string;
  microBatch: number | null;
  /** Progress for the page ('trying webgpu...'). */
  log?: (line: string) => void;
}

/**
 * Picks the best tfjs backend this tab can train on, in BROWSER_BACKENDS order, and says why
 * each better one was passed over.
 */
export async function selectBrowserBackend(options: SelectOptions): Promise<BackendReport> {
  const chain: readonly BrowserBackendName[] = options.force ? [options.force] : BROWSER_BACKENDS;
  const attempts: Record<BrowserBackendName, () => Promise<{ device: string; adapter: AdapterDescription | null }>> = {
    webgpu: tryWebgpu,
    webgl: tryWebgl,
    wasm: () => tryWasm(options.wasmPaths),
    cpu: tryCpu,
  };
  const skipped: BackendReport['skipped'] = [];
  for (const name of chain) {
    options.log?.(`trying ${name}`);
    try {
      const { device, adapter } = await attempts[name]();
      // A software WebGPU adapter (SwiftShader) is correct but far slower than WASM (measured
      // in headless Chromium: about 6 against 165 images/s): take it only when forced.
      if (!options.force && adapter?.isFallbackAdapter) {
        throw new Error('only a software (fallback) WebGPU adapter, slower than WASM; force it with ?backend=webgpu');
      }
      await checkTrainingStep(name);
      const tfBackend = tf.getBackend();
      return { name, tfBackend, device, adapter, microBatch: options.microBatch ?? browserMicroBatch(tfBackend), skipped };
    } catch (error) {
      const reason = describe(error);
      // Free what a backend that got half-way holds (a GPU device, a WASM heap) before the next.
      if (tf.getBackend() === name) {
        try {
          tf.removeBackend(name);
        } catch {
          // nothing left to free
        }
      }
      if (options.force) throw new Error(`backend ${name} is not usable in this tab: ${reason}`);
      skipped.push({ name, reason });
      options.log?.(`skipped ${name}: ${reason}`);
    }
  }
  throw new Error(`no TensorFlow.js backend could train in this tab:\n${skipped.map((s) => `  ${s.name}: ${s.reason}`).join('\n')}`);
}
