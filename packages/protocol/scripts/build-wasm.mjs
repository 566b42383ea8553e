// Compiles the package's AssemblyScript kernels into WebAssembly SIMD modules and writes each,
// base64, into src/simd/: assembly/vector-kernels.ts (the codecs') into module.generated.ts and
// assembly/low-rank-kernels.ts into low-rank.generated.ts. The generated files are committed, so
// that typecheck and tests run from a fresh clone without building; `npm run build` regenerates
// them, and test/vector-kernels.test.ts fails when one is stale.
//
//   node scripts/build-wasm.mjs [--check]   (--check: exit 1 if a committed file is stale)
import { buildScratchModule } from '../../../scripts/assemblyscript-module.mjs';

await buildScratchModule(import.meta.url, {
  source: 'assembly/vector-kernels.ts',
  constName: 'VECTOR_KERNELS_WASM',
  description: "The codecs' vector kernels",
  test: 'test/vector-kernels.test.ts',
});
await buildScratchModule(import.meta.url, {
  source: 'assembly/low-rank-kernels.ts',
  constName: 'LOW_RANK_KERNELS_WASM',
  description: "Low-rank compression's matrix kernels",
  test: 'test/vector-kernels.test.ts',
  target: 'src/simd/low-rank.generated.ts',
});
