/**
 * The tab's backend candidates, run inside the Web Worker: WebGPU, WebGL, WASM (with Chorus'
 * WASM training kernels), plain JavaScript. How each loads is all that is the tab's own: the
 * choice (a real training step each, timed, the fastest winning) is @chorus/backend's
 * selectBackend, as in Node.
 */
import * as tf from '@tensorflow/tfjs';
// Registers 'webgpu' when this browser has navigator.gpu (checked at import time).
import '@tensorflow/tfjs-backend-webgpu';
import {
  SOFTWARE_RENDERER,
  activateBackend as activate,
  adapterName,
  microBatchFor,
  selectBackend,
  type BackendCandidate,
  type SelectEvent,
} from '@chorus/backend';
import { loadWasm } from './wasm-backend.js';
import { BROWSER_BACKENDS, type AdapterDescription, type BackendReport, type BrowserBackendName } from './messages.js';

/** The parts of WebGPU read here; typed loosely because browsers moved fields between versions. */
interface LooseAdapter {
  info?: Record<string, unknown>;
  isFallbackAdapter?: boolean;
  requestAdapterInfo?: () => Promise<Record<string, unknown>>;
}
interface LooseGpu {
  requestAdapter(options?: { powerPreference?: string }): Promise<LooseAdapter | null>;
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** The adapter WebGPU gives tfjs (the same request tfjs-backend-webgpu makes), described. */
async function describeAdapter(gpu: LooseGpu): Promise<AdapterDescription> {
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('WebGPU found no adapter (no usable GPU, or WebGPU is disabled in this browser)');
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
  return `${adapterName(adapter)}${adapter.isFallbackAdapter ? ' (fallback adapter: software rendering)' : ''}`;
}

interface TabLoaded {
  device: string;
  adapter: AdapterDescription | null;
  software: boolean;
}

async function tryWebgpu(forced: boolean): Promise<TabLoaded> {
  const gpu = (navigator as unknown as { gpu?: LooseGpu }).gpu;
  if (!gpu) throw new Error('this browser has no WebGPU here (navigator.gpu is missing in a Web Worker)');
  const adapter = await describeAdapter(gpu);
  await activate('webgpu');
  // A software WebGPU adapter (SwiftShader) is correct but far slower than WASM (measured in
  // headless Chromium: about 6 against 165 images/s): not even timed unless forced.
  if (!forced && adapter.isFallbackAdapter) {
    throw new Error('only a software (fallback) WebGPU adapter, slower than WASM; force it with ?backend=webgpu');
  }
  return { device: `WebGPU: ${adapterLabel(adapter)}`, adapter, software: adapter.isFallbackAdapter };
}

interface WebglBackendLike {
  gpgpu?: { gl?: WebGL2RenderingContext | WebGLRenderingContext };
}

async function tryWebgl(): Promise<TabLoaded> {
  if (typeof OffscreenCanvas === 'undefined') throw new Error('no OffscreenCanvas in this Web Worker, which WebGL here needs');
  await activate('webgl');
  const gl = (tf.backend() as unknown as WebglBackendLike).gpgpu?.gl;
  let renderer = '';
  if (gl) {
    const debug = gl.getExtension('WEBGL_debug_renderer_info');
    renderer = String(gl.getParameter(debug ? debug.UNMASKED_RENDERER_WEBGL : gl.RENDERER) ?? '');
  }
  // Without a usable GPU (a VM, a remote desktop, a blocklisted driver) WebGL runs on
  // SwiftShader: it passes, but trains resnet20v2 about 20x slower than WASM.
  const software = SOFTWARE_RENDERER.test(renderer);
  return { device: `WebGL: ${renderer || 'unknown renderer'}${software ? ' (software rendering)' : ''}`, adapter: null, software };
}

async function tryWasm(wasmPaths: string): Promise<TabLoaded> {
  return { device: await loadWasm(wasmPaths), adapter: null, software: false };
}

async function tryCpu(): Promise<TabLoaded> {
  await activate('cpu');
  return { device: 'CPU (plain JavaScript)', adapter: null, software: false };
}

export interface SelectOptions {
  /** Take only this backend, failing with the reason if it cannot be had. */
  force: BrowserBackendName | null;
  /** URL prefix where the tfjs-backend-wasm .wasm files are served (ends with '/'). */
  wasmPaths: string;
  microBatch: number | null;
  /**
   * Images/s of a training step of the run's model on the backend just activated. Given, every
   * candidate that passes is timed and the fastest wins; not called for a forced backend.
   */
  measure?: (name: BrowserBackendName, microBatch: number) => Promise<number>;
  /** Progress for the page. */
  onProgress?: (event: SelectEvent<BrowserBackendName>) => void;
}

/**
 * Frees what a backend that failed or lost holds (a GPU device, a WASM heap). Only one tfjs
 * has initialised: looking a backend up (tf.findBackend) would initialise it first.
 */
function release(name: string): void {
  if (!(name in tf.engine().registry)) return;
  try {
    tf.removeBackend(name);
  } catch {
    // nothing left to free
  }
}

/**
 * Picks the tfjs backend this tab trains on (selectBackend). A software-only WebGPU adapter is
 * not even tried unless forced; plain JavaScript only when nothing else passed.
 */
export async function selectBrowserBackend(options: SelectOptions): Promise<BackendReport> {
  const forced = options.force !== null;
  const loaders: Record<BrowserBackendName, () => Promise<TabLoaded>> = {
    webgpu: () => tryWebgpu(forced),
    webgl: tryWebgl,
    wasm: () => tryWasm(options.wasmPaths),
    cpu: tryCpu,
  };
  const candidate = (name: BrowserBackendName): BackendCandidate<BrowserBackendName, TabLoaded> => ({ name, load: loaders[name] });
  const microBatch = (tfBackend: string) => microBatchFor(tfBackend, 'browser', options.microBatch);
  const measure = options.measure;
  const { chosen, candidates, measurements } = await selectBackend({
    candidates: BROWSER_BACKENDS.filter((name) => name !== 'cpu').map(candidate),
    lastResort: candidate('cpu'),
    force: options.force ?? undefined,
    measure: measure ? (name, tfBackend) => measure(name, microBatch(tfBackend)) : undefined,
    release,
    where: 'in this tab',
    onProgress: options.onProgress,
  });
  return {
    name: chosen.name,
    tfBackend: chosen.tfBackend,
    device: chosen.loaded.device,
    adapter: chosen.loaded.adapter,
    microBatch: microBatch(chosen.tfBackend),
    replicas: 1,
    skipped: candidates.filter((c) => c !== chosen).map((c) => ({ name: c.name, reason: c.reason ?? 'not chosen' })),
    imagesPerSecond: chosen.imagesPerSecond,
    measurements,
  };
}
