/**
 * Which backend to train on, given what each candidate did in the self-test and how fast its
 * measured training step was. Pure (no tfjs), shared by the Node chain and the browser tab, so
 * the rule is unit-tested once: among the candidates that pass, the fastest measured step wins,
 * but a software renderer (lavapipe/llvmpipe, SwiftShader) never wins over WASM unless forced.
 * That last part is not left to the measurement alone: a short measurement is noisy, and a
 * software GPU path that ties with WASM on a tiny model is still the worse choice for the run.
 */

/** What one candidate backend did. */
export interface CandidateResult {
  name: string;
  /** Passed the self-test (a real training step with finite, non-zero gradients). */
  ok: boolean;
  /** Measured training throughput; null when not measured (failed, forced, or no measurement). */
  imagesPerSecond: number | null;
  /** Runs on a software rasterizer: a fallback WebGPU adapter, lavapipe, SwiftShader. */
  software: boolean;
  /** Why it was not usable (ok false), or why it was passed over (filled in by chooseBackend). */
  reason?: string;
}

/** A candidate as shown to people and sent to the coordinator (runtime.backends). */
export interface BackendMeasurement {
  name: string;
  imagesPerSecond: number | null;
  /** Set when the candidate was not used: why. */
  skipped?: string;
}

export interface ChooseOptions {
  /** The backend the user forced: it is taken if it passed, and its failure is an error. */
  force?: string;
  /** The CPU backend a software renderer must never beat (default 'wasm'). */
  baseline?: string;
  /** Where, in error messages (default 'here'; a tab says 'in this tab'). */
  where?: string;
}

export interface Choice {
  name: string;
  /** Every candidate in the order given, the losers with the reason they lost. */
  results: CandidateResult[];
}

/** Throughput as people read it: 3 significant digits at most, no trailing noise. */
export function formatRate(imagesPerSecond: number): string {
  return imagesPerSecond >= 100 ? imagesPerSecond.toFixed(0) : imagesPerSecond >= 10 ? imagesPerSecond.toFixed(1) : imagesPerSecond.toFixed(2);
}

/**
 * Picks the backend from the candidates' results, given in preference order (ties and
 * unmeasured candidates go to the earlier one). Throws, with every reason, when none passed or
 * the forced one failed.
 */
export function chooseBackend(candidates: readonly CandidateResult[], options: ChooseOptions = {}): Choice {
  const results = candidates.map((c) => ({ ...c }));
  const where = options.where ?? 'here';
  if (options.force !== undefined) {
    const forced = results.find((c) => c.name === options.force);
    if (!forced) throw new Error(`backend ${options.force} was not tried`);
    if (!forced.ok) throw new Error(`backend ${forced.name} is not usable ${where}: ${forced.reason ?? 'it failed its self-test'}`);
    for (const c of results) if (c !== forced && c.ok) c.reason = `${forced.name} was forced`;
    return { name: forced.name, results };
  }
  const passed = results.filter((c) => c.ok);
  if (passed.length === 0) {
    throw new Error(`no TensorFlow.js backend could train ${where}:\n${results.map((c) => `  ${c.name}: ${c.reason ?? 'failed'}`).join('\n')}`);
  }
  const baseline = options.baseline ?? 'wasm';
  const baselineOk = passed.some((c) => c.name === baseline);
  const eligible = passed.filter((c) => !(c.software && baselineOk));
  for (const c of passed) {
    if (!eligible.includes(c)) c.reason = `software rendering, never preferred over ${baseline} (force it to use it)`;
  }
  // Measured candidates beat unmeasured ones; among the measured, the fastest; else chain order.
  let best = eligible[0];
  for (const c of eligible) {
    if (c.imagesPerSecond !== null && (best.imagesPerSecond === null || c.imagesPerSecond > best.imagesPerSecond)) best = c;
  }
  for (const c of eligible) {
    if (c === best) continue;
    c.reason =
      c.imagesPerSecond !== null && best.imagesPerSecond !== null
        ? `slower than ${best.name} (${formatRate(c.imagesPerSecond)} against ${formatRate(best.imagesPerSecond)} img/s)`
        : `${best.name} comes first`;
  }
  return { name: best.name, results };
}

function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** The candidates as runtime.backends carries them: the chosen one has no `skipped`. */
export function measurements(choice: Choice): BackendMeasurement[] {
  return choice.results.map((c) => ({
    name: c.name,
    imagesPerSecond: c.imagesPerSecond,
    // Reasons can be long error messages; the hello accepts 300 characters.
    ...(c.name === choice.name ? {} : { skipped: shorten(c.reason ?? (c.ok ? 'not chosen' : 'failed'), 200) }),
  }));
}

/** Words people can read for one candidate: "webgpu 3.14 img/s", or "webgpu: why it failed". */
export function describeCandidate(c: CandidateResult): string {
  const label = c.name;
  if (!c.ok) return `${label}: ${c.reason ?? 'failed'}`;
  return c.imagesPerSecond === null ? `${label}: passed, not measured` : `${label} ${formatRate(c.imagesPerSecond)} img/s`;
}
