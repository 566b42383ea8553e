// Compiles assembly/vector-kernels.ts (AssemblyScript) into the codecs' WebAssembly SIMD
// module and writes it, base64, into src/simd/module.generated.ts. The generated file is
// committed, so that typecheck and tests run from a fresh clone without building; `npm run
// build` regenerates it, and test/vector-kernels.test.ts fails when it is stale.
//
//   node scripts/build-wasm.mjs [--check]   (--check: exit 1 if the committed file is stale)
import { buildScratchModule } from '../../../scripts/assemblyscript-module.mjs';

await buildScratchModule(import.meta.url, {
  source: 'assembly/vector-kernels.ts',
  constName: 'VECTOR_KERNELS_WASM',
  description: "The codecs' vector kernels",
  test: 'test/vector-kernels.test.ts',
});
