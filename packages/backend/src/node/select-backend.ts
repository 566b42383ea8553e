import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { registerWasmTrainingKernels } from '../wasm/register.js';
import { checkTrainingStep } from '../self-test.js';
import { chooseBackend, describeCandidate, formatRate, measurements, type BackendMeasurement, type CandidateResult } from '../choose.js';

/** The Node backends in order of preference. */
export const NODE_BACKENDS = ['tfjs-node-gpu', 'webgpu', 'tfjs-node', 'wasm', 'cpu'] as const;
export type NodeBackendName = (typeof NODE_BACKENDS)[number];

export interface BackendChoice {
  /** Which entry of the chain was taken. */
  name: NodeBackendName;
  /** tf.getBackend() after the choice ('tensorflow', 'webgpu', 'wasm' or 'cpu'). */
  tfBackend: string;
  /** What computes: a GPU adapter's description, or the CPU. */
  device: string;
  /** Entries that could not be used, and why. */
  skipped: { name: NodeBackendName; reason: string }[];
  /** Every candidate tried, in chain order: device, software or not, measured speed, why not taken. */
  candidates: (CandidateResult & { name: NodeBackendName; device: string | null })[];
  /** The chosen backend's measured images/s (null when forced or not measured). */
  imagesPerSecond: number | null;
  /** The candidates as the hello's runtime.backends carries them. */
  measurements: BackendMeasurement[];
}

class Unavailable extends Error {}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0];
}

async function importOptional(specifier: string): Promise<unknown> {
  try {
    return await import(specifier);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new Unavailable(`${specifier} is not installed (it is an optional dependency)`);
    }
    throw new Unavailable(`${specifier} failed to load: ${describe(error)}`);
  }
}

async function activate(tfBackend: string): Promise<void> {
  const ok = await tf.setBackend(tfBackend);
  // tfjs falls back to another backend silently when one fails to initialise: check.
  if (!ok || tf.getBackend() !== tfBackend) {
    throw new Unavailable(`tf.setBackend('${tfBackend}') did not take (current backend: ${tf.getBackend()})`);
  }
}

interface NodeTensorflowBackend {
  isUsingGpuDevice?: boolean;
}

async function tryTfjsNode(gpu: boolean): Promise<Attempt> {
  await importOptional(gpu ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node');
  await activate('tensorflow');
  const usingGpu = (tf.backend() as unknown as NodeTensorflowBackend).isUsingGpuDevice === true;
  if (gpu && !usingGpu) throw new Unavailable('tfjs-node-gpu loaded but TensorFlow found no CUDA device');
  return { device: usingGpu ? 'CUDA GPU (libtensorflow)' : 'CPU (libtensorflow)', software: false };
}

interface DawnModule {
  create(flags: string[]): { requestAdapter(): Promise<{ info?: Record<string, unknown>; isFallbackAdapter?: boolean } | null> };
  globals: Record<string, unknown>;
}

/** Mesa's lavapipe (llvmpipe), SwiftShader and friends: GPU APIs computed on the CPU. */
const SOFTWARE_RENDERER = /llvmpipe|lavapipe|swiftshader|softpipe|software/i;

/** A WebGPU adapter that is a software renderer (Dawn reports lavapipe as a fallback adapter). */
export function isSoftwareAdapter(adapter: { info?: Record<string, unknown>; isFallbackAdapter?: boolean }): boolean {
  const info = adapter.info ?? {};
  if (adapter.isFallbackAdapter === true || info.isFallbackAdapter === true) return true;
  return [info.vendor, info.architecture, info.device, info.description].some((v) => typeof v === 'string' && SOFTWARE_RENDERER.test(v));
}

/** Dawn on Linux needs the Vulkan loader; without it, it only prints a warning and finds nothing. */
function vulkanLoaderMissing(): boolean {
  if (process.platform !== 'linux') return false;
  const dirs = [
    ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
    '/usr/lib/x86_64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu',
    '/usr/lib64',
    '/usr/lib',
    '/usr/local/lib',
  ];
  return !dirs.some((d) => existsSync(join(d, 'libvulkan.so.1')));
}

interface Attempt {
  device: string;
  software: boolean;
}

/**
 * Dawn is set up once per process: a second instance next to the one tfjs holds was seen to
 * hang the next GPU call, so later choices reuse the first adapter.
 */
let webgpuSetUp: Attempt | null = null;

async function tryWebgpu(): Promise<Attempt> {
  if (webgpuSetUp) {
    await activate('webgpu');
    return webgpuSetUp;
  }
  webgpuSetUp = await setUpWebgpu();
  return webgpuSetUp;
}

async function setUpWebgpu(): Promise<Attempt> {
  if (vulkanLoaderMissing()) throw new Unavailable('no Vulkan loader (libvulkan.so.1) here, which WebGPU through Dawn needs');
  const dawn = (await importOptional('webgpu')) as DawnModule;
  const gpu = dawn.create([]);
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Unavailable('Dawn found no GPU adapter (WebGPU in Node needs a Vulkan driver)');
  // tfjs-backend-webgpu looks for navigator.gpu when it is imported, so set it up first.
  Object.assign(globalThis, dawn.globals);
  const g = globalThis as unknown as { navigator?: { gpu?: unknown } };
  if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
  g.navigator!.gpu = gpu;
  await importOptional('@tensorflow/tfjs-backend-webgpu');
  await activate('webgpu');
  // GPUAdapterInfo's fields are prototype getters: read them one by one.
  const info = adapter.info ?? {};
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((v): v is string => typeof v === 'string' && v !== '');
  const software = isSoftwareAdapter(adapter);
  const label = parts.filter((p, i) => parts.indexOf(p) === i).join(' ') || 'WebGPU adapter';
  return { device: software ? `${label} (software rendering)` : label, software };
}

async function tryWasm(): Promise<Attempt> {
  await importOptional('@tensorflow/tfjs-backend-wasm');
  registerWasmTrainingKernels();
  await activate('wasm');
  return { device: 'CPU (WebAssembly, XNNPACK)', software: false };
}

async function tryCpu(): Promise<Attempt> {
  await activate('cpu');
  return { device: 'CPU (plain JavaScript)', software: false };
}

const attempts: Record<NodeBackendName, () => Promise<Attempt>> = {
  'tfjs-node-gpu': () => tryTfjsNode(true),
  webgpu: tryWebgpu,
  'tfjs-node': () => tryTfjsNode(false),
  wasm: tryWasm,
  cpu: tryCpu,
};

export interface SelectOptions {
  /** Take only this backend, failing with the reason if it cannot be had. */
  force?: string;
  /** Run a tiny training step on each candidate before accepting it (default true). */
  selfTest?: boolean;
  /**
   * Images/s of a real training step on the backend just activated (the model the worker will
   * train). Given, every candidate that passes is measured and the fastest is taken; without
   * it, the first that passes in chain order. Not called for a forced backend.
   */
  measure?: (name: NodeBackendName, tfBackend: string) => Promise<number>;
  /** Progress while choosing ('measuring webgpu...'): measuring a slow backend takes seconds. */
  log?: (line: string) => void;
}

/**
 * Picks the tfjs backend to train on. Every backend of the chain that loads is tried with a
 * real training step (a missing kernel shows up now, not an hour into a run) and, with
 * `measure`, timed; the fastest wins, except that a software renderer (Mesa's lavapipe behind
 * Dawn) never wins over WASM unless forced: it loads and passes like a GPU but trains about
 * 9x slower than WASM. The plain JavaScript backend is tried only when nothing else passed
 * (it is always far slower than WASM). Says why each other candidate was passed over.
 */
export async function selectNodeBackend(options: SelectOptions = {}): Promise<BackendChoice> {
  if (options.force !== undefined && !(NODE_BACKENDS as readonly string[]).includes(options.force)) {
    throw new Error(`unknown backend '${options.force}'; choose one of: ${NODE_BACKENDS.join(', ')}`);
  }
  const forced = options.force as NodeBackendName | undefined;
  const candidates: BackendChoice['candidates'] = [];
  const tfBackends = new Map<NodeBackendName, string>();
  const tryOne = async (name: NodeBackendName) => {
    const result: BackendChoice['candidates'][number] = { name, ok: false, imagesPerSecond: null, software: false, device: null };
    candidates.push(result);
    try {
      const { device, software } = await attempts[name]();
      Object.assign(result, { device, software });
      if (options.selfTest !== false) await checkTrainingStep(name);
      tfBackends.set(name, tf.getBackend());
      result.ok = true;
    } catch (error) {
      result.reason = describe(error);
      return;
    }
    if (options.measure && forced === undefined) {
      options.log?.(`measuring ${name}...`);
      try {
        result.imagesPerSecond = await options.measure(name, tf.getBackend());
      } catch (error) {
        // It passed the small self-test but cannot train the real model (out of memory, say).
        Object.assign(result, { ok: false, reason: `a training step of the model failed: ${describe(error)}` });
      }
    }
  };
  if (forced !== undefined) {
    await tryOne(forced);
  } else {
    for (const name of NODE_BACKENDS) if (name !== 'cpu') await tryOne(name);
    if (!candidates.some((c) => c.ok)) await tryOne('cpu');
  }
  const choice = chooseBackend(candidates, { force: forced });
  const chosen = candidates.find((c) => c.name === choice.name)!;
  // The chosen backend may not be the last one activated: switch back to it.
  await activate(tfBackends.get(chosen.name)!);
  for (const c of candidates) c.reason = choice.results.find((r) => r.name === c.name)?.reason ?? c.reason;
  return {
    name: chosen.name,
    tfBackend: tf.getBackend(),
    device: chosen.device ?? '',
    skipped: candidates.filter((c) => !c.ok).map((c) => ({ name: c.name, reason: c.reason ?? 'failed' })),
    candidates,
    imagesPerSecond: chosen.imagesPerSecond,
    measurements: measurements(choice),
  };
}

/** One line per backend for logs: the choice and its speed, then the others and why not. */
export function describeChoice(choice: BackendChoice): string {
  const speed = choice.imagesPerSecond === null ? '' : `, ${formatRate(choice.imagesPerSecond)} img/s`;
  const lines = [`backend: ${choice.name} (tf backend '${choice.tfBackend}', device: ${choice.device}${speed})`];
  for (const c of choice.candidates) {
    if (c.name === choice.name) continue;
    if (!c.ok) lines.push(`  skipped ${c.name}: ${c.reason}`);
    else lines.push(`  passed over ${describeCandidate(c)}${c.device ? ` (${c.device})` : ''}: ${c.reason}`);
  }
  return lines.join('\n');
}
