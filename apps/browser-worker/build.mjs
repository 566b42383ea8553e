// Bundles the /join page into dist/ (what the coordinator serves under /join/):
//   dist/index.html                     the page
//   dist/page.js                        page script (module)
//   dist/worker.js                      training Web Worker (module worker)
//   dist/replica.js                     a replica Web Worker the training worker starts on WASM
//   dist/chunk-*.js                     code the scripts share (tfjs, the training code)
//   dist/tfjs-backend-wasm*.wasm        tfjs-backend-wasm binaries (found via setWasmPaths)
//   dist/*.js.map                       source maps
import { build } from 'esbuild';
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
const require = createRequire(import.meta.url);

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

const started = Date.now();
const result = await build({
  entryPoints: { page: join(here, 'src/page.ts'), worker: join(here, 'src/tab-worker.ts'), replica: join(here, 'src/replica-worker.ts') },
  outdir: dist,
  bundle: true,
  format: 'esm',
  // worker.js and replica.js share tfjs and the training code: one chunk, fetched once.
  splitting: true,
  chunkNames: 'chunk-[hash]',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: 'linked',
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
  // tfjs checks process.env in a few places; there is no process in a browser.
  define: { 'process.env.NODE_ENV': '"production"' },
});

// The wasm binaries tfjs-backend-wasm fetches at run time, next to worker.js.
const wasmDir = join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
const wasmFiles = (await readdir(wasmDir)).filter((f) => f.endsWith('.wasm'));
if (wasmFiles.length === 0) throw new Error(`no .wasm files in ${wasmDir}`);
for (const f of wasmFiles) await copyFile(join(wasmDir, f), join(dist, f));
await copyFile(join(here, 'static/index.html'), join(dist, 'index.html'));

const sizes = Object.entries(result.metafile.outputs)
  .filter(([file]) => file.endsWith('.js'))
  .map(([file, o]) => `${file.split('/').pop()} ${(o.bytes / 1024).toFixed(0)} KiB`);
console.log(`browser-worker: bundled ${sizes.join(', ')}, ${wasmFiles.length} wasm files in ${Date.now() - started} ms`);
