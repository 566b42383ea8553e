import { formatRate, microBatchFor } from '@chorus/backend';
import { selectNodeBackend, type BackendChoice } from '@chorus/backend/node';
import { measureTrainingSpeed, specForPreset, type WorkerLog } from '@chorus/worker';
import { fetchRunPreset } from './run-info.js';
import type { WsTlsOptions } from './ws-transport.js';

export interface ChooseOptions {
  /** The coordinator's WebSocket URL (its /api/status says which model it trains). */
  url: string;
  force?: string;
  microBatch?: number;
  tls?: WsTlsOptions;
  log?: WorkerLog;
}

export type WorkerBackend = BackendChoice & {
  /** The model the candidates were timed on; null when forced (nothing was timed). */
  timedOn: string | null;
};

/**
 * The worker's backend: every candidate that passes the self-test is timed on a training step
 * of the coordinator's model, and the fastest wins (never a software renderer over WASM unless
 * forced; see selectNodeBackend). A forced backend is not timed: nothing is being compared.
 */
export async function chooseWorkerBackend(options: ChooseOptions): Promise<WorkerBackend> {
  if (options.force !== undefined) return { ...(await selectNodeBackend({ force: options.force })), timedOn: null };
  const run = await fetchRunPreset(options.url, options.tls);
  const { preset, spec } = specForPreset(run.preset);
  if (run.preset === null) options.log?.('warn', 'could not ask the coordinator which model it trains: timing backends on the default', { preset, error: run.error });
  else if (run.preset !== preset) options.log?.('warn', 'this build does not know the coordinator\'s preset: timing backends on the default', { preset, asked: run.preset });
  const choice = await selectNodeBackend({
    onProgress: (e) => {
      if (e.kind === 'measuring') options.log?.('info', 'timing a training step', { backend: e.name, preset });
    },
    measure: (_name, tfBackend) => measureTrainingSpeed(spec, { microBatch: microBatchFor(tfBackend, 'node', options.microBatch) }),
  });
  return { ...choice, timedOn: preset };
}

/** The choice as log records: the backend taken, then every other candidate and why not. */
export function logChoice(log: WorkerLog, backend: WorkerBackend): void {
  const rate = (ips: number | null) => (ips === null ? undefined : formatRate(ips));
  log('info', 'backend chosen', {
    backend: backend.name,
    tf: backend.tfBackend,
    device: backend.device,
    imagesPerSecond: rate(backend.imagesPerSecond),
    timedOn: backend.timedOn ?? undefined,
  });
  for (const c of backend.candidates) {
    if (c.name === backend.name) continue;
    if (!c.ok) log('info', 'backend skipped', { backend: c.name, reason: c.reason });
    else log('info', 'backend passed over', { backend: c.name, imagesPerSecond: rate(c.imagesPerSecond), device: c.device ?? undefined, reason: c.reason });
  }
}
