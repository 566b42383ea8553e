import { existsSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { routes } from '@chorus/coordinator';
import { waitFor } from './support.js';

/** Debian's Chromium (apt-get install chromium); never a downloaded browser. */
export const chromiumPath = process.env.CHORUS_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Why the browser tests cannot run here, or false. Only outside CI: on CI (.ci/run installs
 * Chromium) a missing browser fails the tests instead of hiding them.
 */
export const skipBrowserTests: string | false =
  existsSync(chromiumPath) || process.env.CI ? false : `no Chromium at ${chromiumPath} (apt-get install chromium, or set CHORUS_CHROMIUM)`;

/** What the /join page reports as window.chorus.state (apps/browser-worker/src/page.ts). */
export interface TabState {
  phase: string;
  backend: {
    name: string;
    tfBackend: string;
    device: string;
    microBatch: number;
    /** Replicas computing training shards (replica workers on WASM, else 1). */
    replicas: number;
    adapter: { vendor: string; architecture: string; description: string; isFallbackAdapter: boolean } | null;
  } | null;
  status: {
    state: string;
    workerId: string | null;
    /** The weights version it holds. */
    version: number;
    stepsDone: number;
    lastLoss: number | null;
    lastShard: number;
    imagesPerSecond: number | null;
  } | null;
  memory: { numTensors: number; numBytes: number } | null;
  tensorsPerShard: number[];
  hidden: boolean;
  error: string | null;
  endReason: string | null;
  log: string[];
}

export interface Tab {
  page: Page;
  /** Console lines and page errors, for failure messages. */
  console: string[];
  state(): Promise<TabState>;
  /** Waits until `probe` accepts the tab's state; fails early (with the tab's log) if the tab failed. */
  waitFor<T>(what: string, probe: (s: TabState) => T | null | undefined | false, timeoutMs?: number): Promise<T>;
  /** Pretends the tab was hidden or shown (what switching tabs does to document.visibilityState). */
  setHidden(hidden: boolean): Promise<void>;
}

export interface Chromium {
  context: BrowserContext;
  open(url: string): Promise<Tab>;
  close(): Promise<void>;
}

/**
 * Headless Chromium with WebGPU (SwiftShader when there is no GPU) in a fresh profile.
 * `ignoreHTTPSErrors`: accept any certificate (a test's own, from a CA Chromium does not know).
 */
export async function launchChromium(options: { ignoreHTTPSErrors?: boolean } = {}): Promise<Chromium> {
  const profile = await mkdtemp(join(tmpdir(), 'chorus-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-quic',
        '--enable-unsafe-webgpu',
      ],
      env: { ...process.env, HOME: profile, TMPDIR: profile },
      ...(options.ignoreHTTPSErrors ? { ignoreHTTPSErrors: true } : {}),
    });
  } catch (error) {
    await rm(profile, { recursive: true, force: true });
    throw error;
  }
  return {
    context,
    open: (url) => openTab(context, url),
    close: async () => {
      await context.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true });
    },
  };
}

async function openTab(context: BrowserContext, url: string): Promise<Tab> {
  const page = await context.newPage();
  const lines: string[] = [];
  page.on('console', (m) => lines.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`pageerror: ${e.message}`));
  await page.goto(url);
  const state = () => page.evaluate(() => (window as unknown as { chorus: { state: TabState } }).chorus.state);
  return {
    page,
    console: lines,
    state,
    waitFor: (what, probe, timeoutMs = 60_000) =>
      waitFor(
        what,
        async () => {
          const s = await state();
          if (s.phase === 'failed') throw new Error(`the tab failed: ${s.error}\n${s.log.join('\n')}\n${lines.join('\n')}`);
          return probe(s);
        },
        timeoutMs,
      ),
    // A string, not a function: tsx compiles functions with esbuild's keepNames, whose __name
    // helper does not exist in the page.
    setHidden: (hidden) =>
      page.evaluate(
        `Object.defineProperty(document, 'visibilityState', { configurable: true, value: '${hidden ? 'hidden' : 'visible'}' });` +
          `document.dispatchEvent(new Event('visibilitychange'));`,
      ),
  };
}

/**
 * Only the page, no run: the bundle served with the coordinator's routes (?selftest tabs).
 * `isolated: false` drops the cross-origin isolation headers, as a page reached over plain http
 * from another machine is (no SharedArrayBuffer, no threaded WASM build).
 */
export async function serveBundle(options: { isolated?: boolean } = {}): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (options.isolated === false) {
      const writeHead = res.writeHead.bind(res) as (status: number, headers?: Record<string, unknown>) => unknown;
      (res as unknown as { writeHead: typeof writeHead }).writeHead = (status, headers = {}) =>
        writeHead(status, Object.fromEntries(Object.entries(headers).filter(([name]) => !/^cross-origin-(opener|embedder)-policy$/i.test(name))));
    }
    void (async () => {
      if (!(await routes(req, res))) {
        res.writeHead(404);
        res.end();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
