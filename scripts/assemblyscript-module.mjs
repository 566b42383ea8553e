// What Chorus' two WebAssembly builds share (packages/backend/scripts/build-wasm.mjs for the
// training kernels, packages/protocol/scripts/build-wasm.mjs for the codecs' vector kernels):
// compiling one AssemblyScript file in memory, and writing the generated TypeScript that embeds
// the result, or with --check failing when the committed copy is stale.
import { readFile, writeFile } from 'node:fs/promises';
import asc from 'assemblyscript/asc';

/** Compiles `source` with `flags` and returns the module's bytes. */
export async function compileAssemblyScript(source, flags) {
  const outputs = {};
  const { error, stderr } = await asc.main([source, '--outFile', 'module.wasm', ...flags], {
    writeFile: (name, contents) => {
      outputs[name] = contents;
    },
  });
  if (error) throw new Error(`asc failed: ${error.message}\n${stderr.toString()}`);
  const bytes = outputs['module.wasm'];
  if (bytes == null) throw new Error(`asc wrote no module for ${source}`);
  return Buffer.from(bytes);
}

/** Writes `text` to `target`, or with `--check` on the command line exits 1 if `target` differs. */
export async function writeOrCheck(target, text, rebuildHint) {
  if (process.argv.includes('--check')) {
    const current = await readFile(target, 'utf8').catch(() => '');
    if (current !== text) {
      console.error(`${target} is stale: ${rebuildHint}`);
      process.exit(1);
    }
  } else {
    await writeFile(target, text);
    console.log(`wrote ${target}`);
  }
}
