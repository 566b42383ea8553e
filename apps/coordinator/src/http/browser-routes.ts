import { createBundleRoutes, locateBundle, plainFileBelow, type Routes } from './static-bundle.js';

/**
 * The browser worker's HTTP routes: `/join` (the page a person opens to join with a browser
 * tab) and the files of its bundle under `/join/` (page.js, worker.js, the tfjs WASM binaries).
 * The bundle is @chorus/browser-worker's dist/ folder, found at run time: the coordinator does
 * not depend on it, and answers 503 with the reason when it is not installed or not built.
 *
 * Every answer carries the headers that make the page cross-origin isolated (so WASM can use
 * threads): COOP same-origin, COEP require-corp, and CORP same-origin on the resources.
 */
export type { Routes } from './static-bundle.js';

export interface BrowserRoutesOptions {
  /** The bundle folder; by default @chorus/browser-worker's dist/, looked up until found. */
  dist?: string | (() => string | null);
}

export const JOIN_PREFIX = '/join';

const ISOLATION_HEADERS = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
  'x-content-type-options': 'nosniff',
};

/** Where @chorus/browser-worker's bundle is, or null when the package is not installed. */
export function locateBrowserBundle(): string | null {
  return locateBundle('@chorus/browser-worker');
}

/** The bundle-relative file a /join path names, or null when it names nothing servable. */
export function bundlePath(pathname: string): string | null {
  if (pathname === JOIN_PREFIX || pathname === `${JOIN_PREFIX}/`) return 'index.html';
  return plainFileBelow(JOIN_PREFIX, pathname);
}

/** Routes for ChorusServer's `routes` option (see module doc). */
export function createBrowserRoutes(options: BrowserRoutesOptions = {}): Routes {
  return createBundleRoutes({
    packageName: '@chorus/browser-worker',
    feature: 'joining from a browser',
    fileFor: (pathname) => (pathname === JOIN_PREFIX || pathname.startsWith(`${JOIN_PREFIX}/`) ? bundlePath(pathname) : undefined),
    headers: ISOLATION_HEADERS,
    dist: options.dist ?? locateBrowserBundle,
  });
}

/** The browser worker's routes, serving @chorus/browser-worker's dist/ (see createBrowserRoutes). */
export const routes: Routes = createBrowserRoutes();
