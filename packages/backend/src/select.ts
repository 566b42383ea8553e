/**
 * The backend chooser both hosts run (the Node chain and the browser tab): try each candidate,
 * accept it only after a real training step, time the ones that pass, and let chooseBackend
 * pick. The hosts say only what is theirs: which candidates, how each loads, and (a tab) how
 * to free what a losing backend holds. Platform-neutral: tfjs only.
 */
import * as tf from '@tensorflow/tfjs';
import { checkTrainingStep } from './self-test.js';
import { chooseBackend, measurements, type BackendMeasurement, type CandidateResult, type Choice } from './choose.js';

/** A GPU API computed on the CPU: Mesa's lavapipe/llvmpipe and softpipe, SwiftShader. */
export const SOFTWARE_RENDERER = /llvmpipe|lavapipe|swiftshader|softpipe|software/i;

/** The first line of an error's message: a reason short enough to show per candidate. */
export function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0];
}

/**
 * Makes `tfBackend` current, or throws why not. tfjs falls back to another backend silently
 * when one fails to initialise, so the result is checked.
 */
export async function activateBackend(tfBackend: string): Promise<void> {
  if (tf.findBackendFactory(tfBackend) === null) throw new Error(`tfjs has no '${tfBackend}' backend registered here`);
  let ok: boolean;
  try {
    ok = await tf.setBackend(tfBackend);
  } catch (error) {
    throw new Error(`tf.setBackend('${tfBackend}') failed: ${firstLine(error)}`);
  }
  if (!ok || tf.getBackend() !== tfBackend) {
    throw new Error(`tf.setBackend('${tfBackend}') did not take (current backend: ${tf.getBackend() ?? 'none'})`);
  }
}

/** What a candidate computes on, once loaded. */
export interface Loaded {
  /** In words, for people and runtime.device: a GPU adapter, or the CPU. */
  device: string;
  /** A software renderer: it never wins over WASM unless forced (see chooseBackend). */
  software: boolean;
}

export interface BackendCandidate<Name extends string, L extends Loaded = Loaded> {
  name: Name;
  /** Loads the backend and makes it current; throws, saying why, when it cannot be had here. */
  load(): Promise<L>;
}

/** One candidate's outcome: measured images/s, or why it was skipped or passed over. */
export type CandidateOutcome<Name extends string, L extends Loaded = Loaded> = CandidateResult & {
  name: Name;
  /** Null when it did not load. */
  device: string | null;
  loaded: L | null;
  /** tf.getBackend() once it passed its self-test. */
  tfBackend: string | null;
};

/** Progress while choosing: measuring a slow backend takes seconds. */
export type SelectEvent<Name extends string> =
  | { kind: 'trying' | 'measuring'; name: Name }
  | { kind: 'skipped'; name: Name; reason: string }
  | { kind: 'measured'; name: Name; imagesPerSecond: number };

export interface SelectOptions<Name extends string, L extends Loaded = Loaded> {
  /** In order of preference. */
  candidates: readonly BackendCandidate<Name, L>[];
  /** Tried only when no candidate passed (plain JavaScript: always far slower than WASM). */
  lastResort?: BackendCandidate<Name, L>;
  /** Take only this backend, failing with the reason if it cannot be had (or is not a candidate). */
  force?: string;
  /** Run a tiny training step on each candidate before accepting it (default true). */
  selfTest?: boolean;
  /**
   * Images/s of a training step of the run's model on the backend just made current. Given,
   * every candidate that passes is timed and the fastest wins; not called for a forced backend.
   */
  measure?: (name: Name, tfBackend: string) => Promise<number>;
  /** Frees what a backend that failed or lost holds (a GPU device, a WASM heap). */
  release?: (name: Name) => void;
  /** Where, in error messages ('here', 'in this tab'). */
  where?: string;
  onProgress?: (event: SelectEvent<Name>) => void;
}

export interface Selection<Name extends string, L extends Loaded = Loaded> {
  chosen: CandidateOutcome<Name, L> & { loaded: L; tfBackend: string };
  /** Every candidate tried, in order, the others with why they were not taken. */
  candidates: CandidateOutcome<Name, L>[];
  choice: Choice;
  /** The candidates as the hello's runtime.backends carries them. */
  measurements: BackendMeasurement[];
}

/**
 * Picks the tfjs backend to train on and leaves it current. Throws, with every reason, when
 * none can train or the forced one cannot be had.
 */
export async function selectBackend<Name extends string, L extends Loaded>(options: SelectOptions<Name, L>): Promise<Selection<Name, L>> {
  const all = options.lastResort ? [...options.candidates, options.lastResort] : [...options.candidates];
  const forced = options.force === undefined ? undefined : all.find((c) => c.name === options.force);
  if (options.force !== undefined && !forced) {
    throw new Error(`unknown backend '${options.force}'; choose one of: ${all.map((c) => c.name).join(', ')}`);
  }
  const outcomes: CandidateOutcome<Name, L>[] = [];
  const tryOne = async (candidate: BackendCandidate<Name, L>) => {
    const { name } = candidate;
    options.onProgress?.({ kind: 'trying', name });
    const outcome: CandidateOutcome<Name, L> = { name, ok: false, imagesPerSecond: null, software: false, device: null, loaded: null, tfBackend: null };
    outcomes.push(outcome);
    const skip = (reason: string) => {
      Object.assign(outcome, { ok: false, reason });
      options.release?.(name);
      if (!forced) options.onProgress?.({ kind: 'skipped', name, reason });
    };
    try {
      const loaded = await candidate.load();
      Object.assign(outcome, { loaded, device: loaded.device, software: loaded.software });
      if (options.selfTest !== false) await checkTrainingStep(name);
      outcome.tfBackend = tf.getBackend();
      outcome.ok = true;
    } catch (error) {
      return skip(firstLine(error));
    }
    if (options.measure && !forced) {
      options.onProgress?.({ kind: 'measuring', name });
      try {
        outcome.imagesPerSecond = await options.measure(name, outcome.tfBackend);
        options.onProgress?.({ kind: 'measured', name, imagesPerSecond: outcome.imagesPerSecond });
      } catch (error) {
        // It passed the small self-test but cannot train the real model (out of memory, say).
        skip(`a training step of the model failed: ${firstLine(error)}`);
      }
    }
  };
  if (forced) {
    await tryOne(forced);
  } else {
    for (const candidate of options.candidates) await tryOne(candidate);
    if (options.lastResort && !outcomes.some((c) => c.ok)) await tryOne(options.lastResort);
  }
  const choice = chooseBackend(outcomes, { force: forced?.name, where: options.where });
  outcomes.forEach((c, i) => (c.reason = choice.results[i].reason));
  const chosen = outcomes.find((c) => c.name === choice.name) as Selection<Name, L>['chosen'];
  for (const c of outcomes) if (c !== chosen && c.tfBackend) options.release?.(c.name);
  // The chosen backend may not be the last one made current: switch back to it.
  await activateBackend(chosen.tfBackend);
  return { chosen, candidates: outcomes, choice, measurements: measurements(choice) };
}
