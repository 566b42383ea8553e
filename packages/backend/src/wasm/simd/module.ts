/**
 * Chorus' WebAssembly SIMD kernels (assembly/kernels.ts, compiled by AssemblyScript into
 * module.generated.ts), instantiated on tfjs-backend-wasm's own memory so that they read and
 * write tensors in place: no copies in or out. The module has no data segments, globals or
 * allocator (scripts/build-wasm.mjs), so it touches only the tensors a kernel passes it.
 *
 * Compiled synchronously once per backend memory: about 4 KB (3,982 bytes), under the 4 KiB
 * that Chromium compiles synchronously on a page's main thread too; keep it under that when
 * adding kernels, or compile it asynchronously ahead (a tab trains in a Web Worker, which has
 * no such limit, but a backend check may run on the page).
 */
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { KERNELS_WASM, KERNELS_WASM_SHARED } from './module.generated.js';

/** Exports of assembly/kernels.ts; pointers are byte offsets into the tfjs heap. */
export interface SimdKernels {
  bnForward(
    x: number, out: number, mean: number, variance: number, gamma: number, beta: number,
    groups: number, rows: number, c: number, eps: number, relu: number, scratch: number,
  ): void;
  bnBackward(
    x: number, out: number, dy: number, mean: number, variance: number, gamma: number,
    dx: number, dgamma: number, dbeta: number,
    groups: number, rows: number, c: number, eps: number, relu: number, scratch: number,
  ): void;
  sumMiddleAxis(src: number, dst: number, outer: number, reduce: number, inner: number, scale: number, scratch: number): void;
  convBackpropFilter(
    x: number, dy: number, dw: number,
    batch: number, inH: number, inW: number, ci: number, outH: number, outW: number, co: number,
    kH: number, kW: number, sh: number, sw: number, padTop: number, padLeft: number,
  ): void;
}

function decode(base64: string): Uint8Array<ArrayBuffer> {
  const s = atob(base64);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return bytes;
}

let plainBytes: Uint8Array<ArrayBuffer> | null = null;
let sharedBytes: Uint8Array<ArrayBuffer> | null = null;
let supported: boolean | null = null;
const instances = new WeakMap<WebAssembly.Memory, SimdKernels>();

/** Whether this JavaScript engine runs WebAssembly SIMD (it validates the module). */
export function simdSupported(): boolean {
  if (supported == null) {
    plainBytes ??= decode(KERNELS_WASM);
    supported = typeof WebAssembly === 'object' && WebAssembly.validate(plainBytes);
  }
  return supported;
}

interface EmscriptenModule {
  asm?: { memory?: WebAssembly.Memory };
  wasmMemory?: WebAssembly.Memory;
}

/** The WebAssembly.Memory of a wasm backend: exported (plain build) or imported (threaded build). */
function backendMemory(backend: BackendWasm): WebAssembly.Memory | null {
  const m = backend.wasm as unknown as EmscriptenModule;
  return m.asm?.memory ?? m.wasmMemory ?? null;
}

let enabled = true;

/**
 * Turns the SIMD paths of Chorus' existing kernels (Conv2DBackpropFilter's, Sum's and Mean's) off or on,
 * and returns the previous setting; for benchmarks and tests that compare with the paths they
 * replace. The fused BatchNorm kernels are registered or not instead (see register.ts).
 */
export function setSimdKernelsEnabled(on: boolean): boolean {
  const prev = enabled;
  enabled = on;
  return prev;
}

/** Whether the SIMD paths of Chorus' existing kernels are on (see setSimdKernelsEnabled). */
export function simdPathsEnabled(): boolean {
  return enabled;
}

/** The SIMD kernels on this backend's memory, or null where SIMD or the memory is unavailable. */
export function simdKernels(backend: BackendWasm): SimdKernels | null {
  if (!simdSupported()) return null;
  const memory = backendMemory(backend);
  if (memory == null) return null;
  let kernels = instances.get(memory);
  if (kernels == null) {
    const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
    const bytes = shared ? (sharedBytes ??= decode(KERNELS_WASM_SHARED)) : plainBytes!;
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
    kernels = instance.exports as unknown as SimdKernels;
    instances.set(memory, kernels);
  }
  return kernels;
}

/** Byte offset of a tensor's data in the backend's heap. */
export function pointer(backend: BackendWasm, info: { dataId: object }): number {
  return backend.dataIdMap.get(info.dataId).memoryOffset;
}
