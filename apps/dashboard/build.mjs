// Bundles the dashboard into dist/ (what the coordinator serves at / and under /dashboard/):
//   dist/index.html       the page
//   dist/main.js          page script (module), with uPlot and qrcode bundled in
//   dist/main.js.map      its source map
//   dist/dashboard.css    the page's styles
//   dist/uPlot.min.css    uPlot's styles
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
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
  entryPoints: { main: join(here, 'src/main.ts') },
  outdir: dist,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: 'linked',
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
});

await copyFile(join(dirname(require.resolve('uplot/package.json')), 'dist/uPlot.min.css'), join(dist, 'uPlot.min.css'));
await copyFile(join(here, 'static/dashboard.css'), join(dist, 'dashboard.css'));
await copyFile(join(here, 'static/index.html'), join(dist, 'index.html'));

const size = (result.metafile.outputs['dist/main.js'] ?? Object.values(result.metafile.outputs).find((o) => o.entryPoint)).bytes;
console.log(`dashboard: bundled main.js ${(size / 1024).toFixed(0)} KiB in ${Date.now() - started} ms`);
