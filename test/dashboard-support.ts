import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Debian's Chromium (apt-get install chromium); never a downloaded browser. */
export const chromiumPath = process.env.CHORUS_CHROMIUM ?? '/usr/bin/chromium';

/** Why the dashboard tests cannot run here, or false. On CI a missing browser fails instead. */
export const skipDashboardTests: string | false =
  existsSync(chromiumPath) || process.env.CI ? false : `no Chromium at ${chromiumPath} (apt-get install chromium, or set CHORUS_CHROMIUM)`;

export interface Browser {
  context: BrowserContext;
  /** Opens a page and records its console errors and uncaught exceptions in `problems`. */
  open(url: string): Promise<Page>;
  /** Console errors, page errors and failed requests of every page opened, with the page's URL. */
  problems: string[];
  close(): Promise<void>;
}

/** Headless Chromium in a fresh profile (a temporary folder removed by close()). */
export async function launchBrowser(viewport = { width: 1440, height: 1000 }): Promise<Browser> {
  const profile = await mkdtemp(join(tmpdir(), 'chorus-dashboard-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      viewport,
      args: ['--headless', '--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'],
      env: { ...process.env, HOME: profile, TMPDIR: profile },
    });
  } catch (error) {
    await rm(profile, { recursive: true, force: true });
    throw error;
  }
  const problems: string[] = [];
  return {
    context,
    problems,
    async open(url: string) {
      const page = await context.newPage();
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(`${page.url()}: console: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`${page.url()}: ${e.message}`));
      await page.goto(url);
      return page;
    },
    async close() {
      await context.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** The step the dashboard shows (#step's data-step), or -1 before the first status. */
export async function shownStep(page: Page): Promise<number> {
  return page.$eval('#step', (el) => Number((el as HTMLElement).dataset.step ?? -1));
}
