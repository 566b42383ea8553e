/**
 * The WebAssembly SIMD module (assembly/kernels.ts): the committed, generated copy is what
 * AssemblyScript builds from the source today, and the module can only touch the memory it is
 * given (imports nothing but the memory; no data segments, globals or start function, which
 * would write into or depend on tfjs-backend-wasm's heap).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { KERNELS_WASM, KERNELS_WASM_SHARED } from '../src/wasm/simd/module.generated.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Section ids of a WebAssembly binary, in order. */
function sections(bytes: Uint8Array): number[] {
  const ids: number[] = [];
  let i = 8;
  while (i < bytes.length) {
    ids.push(bytes[i++]);
    let size = 0;
    let shift = 0;
    let b: number;
    do {
      b = bytes[i++];
      size |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    i += size;
  }
  return ids;
}

test('src/wasm/simd/module.generated.ts is what scripts/build-wasm.mjs builds from assembly/kernels.ts', () => {
  // Throws (exit 1) when stale.
  execFileSync(process.execPath, [join(root, 'scripts/build-wasm.mjs'), '--check'], { stdio: 'pipe' });
});

for (const [name, base64, shared] of [
  ['plain', KERNELS_WASM, false],
  ['shared', KERNELS_WASM_SHARED, true],
] as const) {
  test(`${name}-memory module imports only the memory and has no data, globals or start`, () => {
    const bytes = Buffer.from(base64, 'base64');
    // Compiled synchronously (src/wasm/simd/module.ts): Chromium allows that on a page's main
    // thread only up to 4 KiB.
    assert.ok(bytes.length <= 4096, `${bytes.length} bytes: over 4 KiB`);
    const module = new WebAssembly.Module(bytes);
    assert.deepEqual(WebAssembly.Module.imports(module), [{ module: 'env', name: 'memory', kind: 'memory' }]);
    const ids = sections(bytes);
    for (const [id, what] of [
      [6, 'global'],
      [8, 'start'],
      [11, 'data'],
    ] as const) {
      assert.ok(!ids.includes(id), `${what} section present`);
    }
    // Instantiates on a memory of its kind.
    const memory = shared ? new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true }) : new WebAssembly.Memory({ initial: 1 });
    const exports = new WebAssembly.Instance(module, { env: { memory } }).exports;
    assert.deepEqual(Object.keys(exports).sort(), ['bnBackward', 'bnForward', 'convBackpropFilter', 'memory', 'sumMiddleAxis']);
  });
}
