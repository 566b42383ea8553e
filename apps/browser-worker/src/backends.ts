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
import { checkTrainingStep, chooseBackend, measurements, registerWasmTrainingKernels, type CandidateResult } from '@chorus/backend';
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

/** A renderer string of a software GPU: SwiftShader (Chromium's), Mesa's llvmpipe/lavapipe. */
const SOFTWARE_RENDERER = /swiftshader|llvmpipe|lavapipe|softpipe|software/i;

interface Attempt {
  device: string;
  adapter: AdapterDescription | null;
  software: boolean;
}

async function tryWebgpu(): Promise<Attempt> {
  const gpu = (navigator as unknown as { gpu?: LooseGpu }).gpu;
  if (!gpu) throw new Unavailable('this browser has no WebGPU here (navigator.gpu is missing in a Web Worker)');
  const adapter = await describeAdapter(gpu);
  await activate('webgpu');
  return { device: `WebGPU: ${adapterLabel(adapter)}`, adapter, software: adapter.isFallbackAdapter };
}

interface WebglBackendLike {
  gpgpu?: { gl?: WebGL2RenderingContext | WebGLRenderingContext };
}

async function tryWebgl(): Promise<Attempt> {
  if (typeof OffscreenCanvas === 'undefined') throw new Unavailable('no OffscreenCanvas in this Web Worker, which WebGL here needs');
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

async function tryWasm(wasmPaths: string): Promise<Attempt> {
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
    software: false,
  };
}

async function tryCpu(): Promise<Attempt> {
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
  /** Progress for the page ('trying webgpu...'). */
  log?: (line: string) => void;
}

/** Frees what a backend that got half-way (or lost) holds: a GPU device, a WASM heap. */
function release(name: string): void {
  if (tf.findBackend(name) === null) return;
  try {
    tf.removeBackend(name);
  } catch {
    // nothing left to free
  }
}

/**
 * Picks the tfjs backend this tab trains on: each of WebGPU, WebGL and WASM that passes a real
 * training step is timed on the run's model and the fastest wins, except that a software
 * renderer (SwiftShader, llvmpipe) never wins over WASM unless forced (chooseBackend). A
 * software-only WebGPU adapter is not even tried unless forced; plain JavaScript only when
 * nothing else passed. Says why each other candidate was passed over.
 */
export async function selectBrowserBackend(options: SelectOptions): Promise<BackendReport> {
  const attempts: Record<BrowserBackendName, () => Promise<Attempt>> = {
    webgpu: tryWebgpu,
    webgl: tryWebgl,
    wasm: () => tryWasm(options.wasmPaths),
    cpu: tryCpu,
  };
  const results: (CandidateResult & { name: BrowserBackendName; attempt: Attempt | null; tfBackend: string | null })[] = [];
  const tryOne = async (name: BrowserBackendName) => {
    options.log?.(`trying ${name}`);
    const result: (typeof results)[number] = { name, ok: false, imagesPerSecond: null, software: false, attempt: null, tfBackend: null };
    results.push(result);
    try {
      const attempt = await attempts[name]();
      Object.assign(result, { attempt, software: attempt.software });
      // A software WebGPU adapter (SwiftShader) is correct but far slower than WASM (measured
      // in headless Chromium: about 6 against 165 images/s): not even timed unless forced.
      if (!options.force && attempt.adapter?.isFallbackAdapter) {
        throw new Error('only a software (fallback) WebGPU adapter, slower than WASM; force it with ?backend=webgpu');
      }
      await checkTrainingStep(name);
      result.tfBackend = tf.getBackend();
      result.ok = true;
    } catch (error) {
      result.reason = describe(error);
      if (tf.getBackend() === name) release(name);
      if (!options.force) options.log?.(`skipped ${name}: ${result.reason}`);
      return;
    }
    if (options.measure && !options.force) {
      options.log?.(`timing a training step on ${name}`);
      try {
        result.imagesPerSecond = await options.measure(name, options.microBatch ?? browserMicroBatch(result.tfBackend!));
        options.log?.(`${name}: ${result.imagesPerSecond.toFixed(2)} images/s`);
      } catch (error) {
        Object.assign(result, { ok: false, reason: `a training step of the model failed: ${describe(error)}` });
        release(name);
      }
    }
  };
  if (options.force) {
    await tryOne(options.force);
  } else {
    for (const name of BROWSER_BACKENDS) if (name !== 'cpu') await tryOne(name);
    if (!results.some((r) => r.ok)) await tryOne('cpu');
  }
  let choice;
  try {
    choice = chooseBackend(results, { force: options.force ?? undefined });
  } catch (error) {
    const message = describe(error);
    throw new Error(options.force ? message.replace('is not usable here', 'is not usable in this tab') : `no TensorFlow.js backend could train in this tab:\n${results.map((r) => `  ${r.name}: ${r.reason ?? 'failed'}`).join('\n')}`);
  }
  const chosen = results.find((r) => r.name === choice.name)!;
  // Free the losers' devices and heaps, then make the winner current again.
  for (const r of results) if (r !== chosen && r.tfBackend) release(r.tfBackend);
  await activate(chosen.tfBackend!);
  return {
    name: chosen.name,
    tfBackend: chosen.tfBackend!,
    device: chosen.attempt!.device,
    adapter: chosen.attempt!.adapter,
    microBatch: options.microBatch ?? browserMicroBatch(chosen.tfBackend!),
    skipped: choice.results.filter((r) => r.name !== chosen.name).map((r) => ({ name: r.name as BrowserBackendName, reason: r.reason ?? 'not chosen' })),
    imagesPerSecond: chosen.imagesPerSecond,
    measurements: measurements(choice),
  };
}
