import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { registerWasmTrainingKernels } from '../wasm/register.js';
import { describeCandidate, formatRate, type BackendMeasurement, type CandidateResult } from '../choose.js';
import { activateBackend as activate, firstLine, selectBackend, type BackendCandidate, type Loaded, type SelectEvent } from '../select.js';
import { adapterName, isSoftwareAdapter } from '../adapter.js';

export { isSoftwareAdapter } from '../adapter.js';

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

async function importOptional(specifier: string): Promise<unknown> {
  try {
    return await import(specifier);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new Error(`${specifier} is not installed (it is an optional dependency)`);
    }
    throw new Error(`${specifier} failed to load: ${firstLine(error)}`);
  }
}

interface NodeTensorflowBackend {
  isUsingGpuDevice?: boolean;
}

async function tryTfjsNode(gpu: boolean): Promise<Loaded> {
  await importOptional(gpu ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node');
  await activate('tensorflow');
  const usingGpu = (tf.backend() as unknown as NodeTensorflowBackend).isUsingGpuDevice === true;
  if (gpu && !usingGpu) throw new Error('tfjs-node-gpu loaded but TensorFlow found no CUDA device');
  return { device: usingGpu ? 'CUDA GPU (libtensorflow)' : 'CPU (libtensorflow)', software: false };
}

interface DawnModule {
  create(flags: string[]): { requestAdapter(): Promise<{ info?: Record<string, unknown>; isFallbackAdapter?: boolean } | null> };
  globals: Record<string, unknown>;
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

/**
 * Dawn is set up once per process: a second instance next to the one tfjs holds was seen to
 * hang the next GPU call, so later choices reuse the first adapter.
 */
let webgpuSetUp: Loaded | null = null;

async function tryWebgpu(): Promise<Loaded> {
  if (webgpuSetUp) {
    await activate('webgpu');
    return webgpuSetUp;
  }
  webgpuSetUp = await setUpWebgpu();
  return webgpuSetUp;
}

async function setUpWebgpu(): Promise<Loaded> {
  if (vulkanLoaderMissing()) throw new Error('no Vulkan loader (libvulkan.so.1) here, which WebGPU through Dawn needs');
  const dawn = (await importOptional('webgpu')) as DawnModule;
  const gpu = dawn.create([]);
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error('Dawn found no GPU adapter (WebGPU in Node needs a Vulkan driver)');
  // tfjs-backend-webgpu looks for navigator.gpu when it is imported, so set it up first.
  Object.assign(globalThis, dawn.globals);
  const g = globalThis as unknown as { navigator?: { gpu?: unknown } };
  if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
  g.navigator!.gpu = gpu;
  await importOptional('@tensorflow/tfjs-backend-webgpu');
  await activate('webgpu');
  const software = isSoftwareAdapter(adapter);
  const label = adapterName(adapter.info ?? {});
  return { device: software ? `${label} (software rendering)` : label, software };
}

async function tryWasm(): Promise<Loaded> {
  await importOptional('@tensorflow/tfjs-backend-wasm');
  registerWasmTrainingKernels();
  await activate('wasm');
  return { device: 'CPU (WebAssembly, XNNPACK)', software: false };
}

async function tryCpu(): Promise<Loaded> {
  await activate('cpu');
  return { device: 'CPU (plain JavaScript)', software: false };
}

const loaders: Record<NodeBackendName, () => Promise<Loaded>> = {
  'tfjs-node-gpu': () => tryTfjsNode(true),
  webgpu: tryWebgpu,
  'tfjs-node': () => tryTfjsNode(false),
  wasm: tryWasm,
  cpu: tryCpu,
};

const candidate = (name: NodeBackendName): BackendCandidate<NodeBackendName> => ({ name, load: loaders[name] });

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
  /** Progress while choosing: measuring a slow backend takes seconds. */
  onProgress?: (event: SelectEvent<NodeBackendName>) => void;
}

/**
 * Picks the tfjs backend to train on (selectBackend, with the Node chain). The fastest that
 * passes wins, except that a software renderer (Mesa's lavapipe behind Dawn) never wins over
 * WASM unless forced: it loads and passes like a GPU but trains about 9x slower than WASM. The
 * plain JavaScript backend is tried only when nothing else passed.
 */
export async function selectNodeBackend(options: SelectOptions = {}): Promise<BackendChoice> {
  const selection = await selectBackend({
    candidates: NODE_BACKENDS.filter((name) => name !== 'cpu').map(candidate),
    lastResort: candidate('cpu'),
    force: options.force,
    selfTest: options.selfTest,
    measure: options.measure,
    onProgress: options.onProgress,
  });
  const candidates = selection.candidates.map(({ loaded: _loaded, tfBackend: _tfBackend, ...c }) => c);
  return {
    name: selection.chosen.name,
    tfBackend: tf.getBackend(),
    device: selection.chosen.device ?? '',
    skipped: candidates.filter((c) => !c.ok).map((c) => ({ name: c.name, reason: c.reason ?? 'failed' })),
    candidates,
    imagesPerSecond: selection.chosen.imagesPerSecond,
    measurements: selection.measurements,
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
