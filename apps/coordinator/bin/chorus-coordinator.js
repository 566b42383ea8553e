#!/usr/bin/env node
// A committed entry point, so npm links `chorus-coordinator` at install time, before the build exists.
import('../dist/cli.js').catch((error) => {
  if (error?.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/cli.js')) {
    console.error('chorus-coordinator is not built yet: run `npm run build` in the Chorus repository first.');
    process.exit(1);
  }
  throw error;
});
