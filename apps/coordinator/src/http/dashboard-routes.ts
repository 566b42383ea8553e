import { createBundleRoutes, locateBundle, plainFileBelow, type Routes } from './static-bundle.js';

/**
 * The dashboard's HTTP routes: `/` (the page, also with `?token=...`) and its bundle's files
 * under `/dashboard/` (main.js, the stylesheets, the source map). The bundle is
 * @chorus/dashboard's dist/ folder, found at run time: the coordinator does not depend on it,
 * and answers 503 with the reason when it is not installed or not built.
 */
export { composeRoutes } from './static-bundle.js';

export interface DashboardRoutesOptions {
  /** The bundle folder; by default @chorus/dashboard's dist/, looked up until found. */
  dist?: string | (() => string | null);
}

export const DASHBOARD_PREFIX = '/dashboard';

const COMMON_HEADERS = {
  'x-content-type-options': 'nosniff',
  // The page's URL carries the run's token: never send it anywhere as a referrer.
  'referrer-policy': 'no-referrer',
  'cross-origin-resource-policy': 'same-origin',
};

/** The page may talk only to its own origin (HTTP and the monitor WebSocket) and not be framed. */
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-frame-options': 'DENY',
};

/** Where @chorus/dashboard's bundle is, or null when the package is not installed. */
export function locateDashboardBundle(): string | null {
  return locateBundle('@chorus/dashboard');
}

/** Whether a path is the dashboard's to answer: `/`, `/index.html`, `/dashboard` and below. */
export function isDashboardPath(pathname: string): boolean {
  return pathname === '/' || pathname === '/index.html' || pathname === DASHBOARD_PREFIX || pathname.startsWith(`${DASHBOARD_PREFIX}/`);
}

/** The bundle-relative file a dashboard path names, or null when it names nothing servable. */
export function dashboardBundlePath(pathname: string): string | null {
  if (pathname === '/' || pathname === '/index.html' || pathname === DASHBOARD_PREFIX || pathname === `${DASHBOARD_PREFIX}/`) return 'index.html';
  return plainFileBelow(DASHBOARD_PREFIX, pathname);
}

/** Routes for ChorusServer's `routes` option (see module doc). */
export function createDashboardRoutes(options: DashboardRoutesOptions = {}): Routes {
  return createBundleRoutes({
    packageName: '@chorus/dashboard',
    feature: 'the dashboard',
    missingHint: '/api/status and /metrics still work',
    fileFor: (pathname) => (isDashboardPath(pathname) ? dashboardBundlePath(pathname) : undefined),
    headers: COMMON_HEADERS,
    fileHeaders: (file) => (file === 'index.html' ? PAGE_HEADERS : {}),
    dist: options.dist ?? locateDashboardBundle,
  });
}

/** The dashboard's routes, serving @chorus/dashboard's dist/ (see createDashboardRoutes). */
export const dashboardRoutes: Routes = createDashboardRoutes();
