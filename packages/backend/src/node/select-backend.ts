import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { registerWasmTrainingKernels } from '../wasm/register.js';
import { checkTrainingStep } from '../self-test.js';

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
  /** Entries tried before it and why each was passed over. */
  skipped: { name: NodeBackendName; reason: string }[];
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

async function tryTfjsNode(gpu: boolean): Promise<string> {
  await importOptional(gpu ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node');
  await activate('tensorflow');
  const usingGpu = (tf.backend() as unknown as NodeTensorflowBackend).isUsingGpuDevice === true;
  if (gpu && !usingGpu) throw new Unavailable('tfjs-node-gpu loaded but TensorFlow found no CUDA device');
  return usingGpu ? 'CUDA GPU (libtensorflow)' : 'CPU (libtensorflow)';
}

interface DawnModule {
  create(flags: string[]): { requestAdapter(): Promise<{ info?: Record<string, string> } | null> };
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

async function tryWebgpu(): Promise<string> {
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
  const info = adapter.info ?? {};
  return [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'WebGPU adapter';
}

async function tryWasm(): Promise<string> {
  await importOptional('@tensorflow/tfjs-backend-wasm');
  registerWasmTrainingKernels();
  await activate('wasm');
  return 'CPU (WebAssembly, XNNPACK)';
}

async function tryCpu(): Promise<string> {
  await activate('cpu');
  return 'CPU (plain JavaScript)';
}

const attempts: Record<NodeBackendName, () => Promise<string>> = {
  'tfjs-node-gpu': () => tryTfjsNode(true),
  webgpu: tryWebgpu,
  'tfjs-node': () => tryTfjsNode(false),
  wasm: tryWasm,
  cpu: tryCpu,
};

export interface SelectOptions {
  /** Take only this backend, failing with the reason if it cannot be had. */
  force?: string;
  /** Run a tiny training step on the chosen backend before accepting it (default true). */
  selfTest?: boolean;
}

/**
 * Picks the best tfjs backend that loads and can train, in NODE_BACKENDS order, and says why
 * each better one was passed over. A backend is only accepted after it has run a real
 * training step, so a missing kernel shows up now and not an hour into a run.
 */
export async function selectNodeBackend(options: SelectOptions = {}): Promise<BackendChoice> {
  let chain: readonly NodeBackendName[] = NODE_BACKENDS;
  if (options.force !== undefined) {
    if (!(NODE_BACKENDS as readonly string[]).includes(options.force)) {
      throw new Error(`unknown backend '${options.force}'; choose one of: ${NODE_BACKENDS.join(', ')}`);
    }
    chain = [options.force as NodeBackendName];
  }
  const skipped: BackendChoice['skipped'] = [];
  for (const name of chain) {
    try {
      const device = await attempts[name]();
      if (options.selfTest !== false) await checkTrainingStep(name);
      return { name, tfBackend: tf.getBackend(), device, skipped };
    } catch (error) {
      const reason = describe(error);
      if (options.force !== undefined) throw new Error(`backend ${name} is not usable here: ${reason}`);
      skipped.push({ name, reason });
    }
  }
  throw new Error(`no TensorFlow.js backend could train here:\n${skipped.map((s) => `  ${s.name}: ${s.reason}`).join('\n')}`);
}

/** One line per backend for logs: the choice, then what was skipped and why. */
export function describeChoice(choice: BackendChoice): string {
  const lines = [`backend: ${choice.name} (tf backend '${choice.tfBackend}', device: ${choice.device})`];
  for (const s of choice.skipped) lines.push(`  skipped ${s.name}: ${s.reason}`);
  return lines.join('\n');
}
