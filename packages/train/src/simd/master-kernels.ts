/**
 * The master state's per-step loops in WebAssembly SIMD (assembly/master-kernels.ts): the SGD
 * step and the batch mean, 2-3x faster than the JavaScript loops, which stay as the fallback.
 * Both paths give the same bits (test/master-kernels.test.ts), so the coordinator and the local
 * trainer still agree with each other and with runs from before the kernels.
 */
import { EmbeddedSimdModule, ResidentArrays, copyOut } from '@chorus/protocol';
import { MASTER_KERNELS_WASM } from './module.generated.js';

interface MasterKernelExports {
  memory: WebAssembly.Memory;
  meanOf(sum: number, out: number, n: number, count: number): void;
  sgdStep(params: number, gradient: number, velocity: number, mask: number, n: number, lr: number, momentum: number, nesterov: number, weightDecay: number): void;
}

const masterKernels = new EmbeddedSimdModule<MasterKernelExports>(MASTER_KERNELS_WASM);

/**
 * An allocator of arrays resident in an arena of the master kernels (see EmbeddedSimdModule):
 * the master weights and optimizer state, which the SGD step then updates where they lie.
 */
export function residentMasterArrays(arrayBytes: readonly number[], scratchBytes: number): ResidentArrays {
  return masterKernels.arena(arrayBytes, scratchBytes);
}

/** Turns the SIMD kernels off or on (tests and benchmarks compare both paths); returns the previous setting. */
export function setMasterKernelsEnabled(on: boolean): boolean {
  return masterKernels.setEnabled(on);
}

/** Whether the SIMD kernels run here. */
export function masterKernelsAvailable(): boolean {
  return masterKernels.available;
}

/** out[i] = sum[i] / count in float32; false (nothing done) where the JavaScript loop must run. */
export function simdMean(sum: Float32Array, count: number, out: Float32Array): boolean {
  const n = out.length;
  const r = masterKernels.prepare(n, sum.subarray(0, n), { output: out });
  if (!r) return false;
  const [k, buffer, s, o] = r;
  k.meanOf(s!, o!, n, count);
  copyOut(buffer, o!, out);
  return true;
}

/** One SGD step in place (see sgdStep in assembly/master-kernels.ts); false where JavaScript must run. */
export function simdSgdStep(
  params: Float32Array, gradient: Float32Array, velocity: Float32Array, mask: Uint8Array,
  lr: number, momentum: number, nesterov: boolean, weightDecay: number,
): boolean {
  const n = params.length;
  const r = masterKernels.prepare(n, params, gradient, velocity, mask);
  if (!r) return false;
  const [k, buffer, p, g, v, m] = r;
  k.sgdStep(p!, g!, v!, m!, n, lr, momentum, nesterov ? 1 : 0, weightDecay);
  copyOut(buffer, p!, params);
  copyOut(buffer, v!, velocity);
  return true;
}
