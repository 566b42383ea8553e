/**
 * WebGPU adapters as both hosts read them (Dawn in Node, the browser's navigator.gpu). Typed
 * loosely: browsers moved fields between versions (isFallbackAdapter went from GPUAdapter to
 * GPUAdapterInfo), and GPUAdapterInfo's fields are prototype getters, so they are read one by one.
 */
import { SOFTWARE_RENDERER } from './select.js';

export interface AdapterInfo {
  vendor?: unknown;
  architecture?: unknown;
  device?: unknown;
  description?: unknown;
  isFallbackAdapter?: unknown;
}

/** "vendor architecture device description" without repeats or blanks, or 'WebGPU adapter'. */
export function adapterName(info: AdapterInfo): string {
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((v): v is string => typeof v === 'string' && v !== '');
  return parts.filter((p, i) => parts.indexOf(p) === i).join(' ') || 'WebGPU adapter';
}

/** A WebGPU adapter that is a software renderer (Dawn reports lavapipe as a fallback adapter). */
export function isSoftwareAdapter(adapter: { info?: AdapterInfo; isFallbackAdapter?: boolean }): boolean {
  const info = adapter.info ?? {};
  if (adapter.isFallbackAdapter === true || info.isFallbackAdapter === true) return true;
  return [info.vendor, info.architecture, info.device, info.description].some((v) => typeof v === 'string' && SOFTWARE_RENDERER.test(v));
}
