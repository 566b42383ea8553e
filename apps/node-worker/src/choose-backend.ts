import { defaultMicroBatch } from '@chorus/backend';
import { selectNodeBackend, type BackendChoice } from '@chorus/backend/node';
import { measureTrainingSpeed, specForPreset } from '@chorus/worker';
import { fetchRunPreset } from './run-info.js';
import type { WsTlsOptions } from './ws-transport.js';

export interface ChooseOptions {
  /** The coordinator's WebSocket URL (its /api/status says which model it trains). */
  url: string;
  force?: string;
  microBatch?: number;
  tls?: WsTlsOptions;
  log?: (line: string) => void;
}

/**
 * The worker's backend: every candidate that passes the self-test is timed on a training step
 * of the coordinator's model, and the fastest wins (never a software renderer over WASM unless
 * forced; see selectNodeBackend). A forced backend is not timed: nothing is being compared.
 */
export async function chooseWorkerBackend(options: ChooseOptions): Promise<BackendChoice & { preset: string }> {
  let preset = 'resnet20v2';
  if (options.force === undefined) {
    const run = await fetchRunPreset(options.url, options.tls);
    const known = specForPreset(run.preset);
    preset = known.preset;
    if (run.preset === null) options.log?.(`could not ask the coordinator which model it trains (${run.error}): timing backends on ${preset}`);
    else if (run.preset !== known.preset) options.log?.(`this build does not know the preset '${run.preset}': timing backends on ${preset}`);
    const spec = known.spec;
    const choice = await selectNodeBackend({
      log: options.log,
      measure: (_name, tfBackend) => measureTrainingSpeed(spec, { microBatch: Math.floor(options.microBatch ?? defaultMicroBatch(tfBackend)) }),
    });
    return { ...choice, preset };
  }
  return { ...(await selectNodeBackend({ force: options.force })), preset };
}
