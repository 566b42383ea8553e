/** The run's token (from the page's URL or typed in), the join link, and the control requests. */

export type ControlAction = 'pause' | 'resume' | 'checkpoint';

/** `path`: where a checkpoint was written. */
export type ControlResult = { ok: true; path?: string } | { ok: false; status: number; message: string };

/** The `token` query parameter of a URL's search string, or null when absent or empty. */
export function tokenFrom(search: string): string | null {
  const token = new URLSearchParams(search).get('token');
  return token !== null && token.trim() !== '' ? token.trim() : null;
}

/** The URL a browser tab opens to join the run. */
export function joinUrl(origin: string, token: string): string {
  return `${origin}/join?token=${encodeURIComponent(token)}`;
}

/** The monitor feed's WebSocket URL for a page at `location`. */
export function monitorUrl(location: { protocol: string; host: string }): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/monitor`;
}

/** Whether an address can only be reached from the machine itself (so a phone cannot use it). */
export function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\./.test(h);
}

/** POST /api/control; never throws: a refusal or a network failure comes back as a result. */
export async function sendControl(action: ControlAction, token: string | null, fetchImpl: typeof fetch = fetch): Promise<ControlResult> {
  let response: Response;
  try {
    response = await fetchImpl('/api/control', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ action }),
      cache: 'no-store',
    });
  } catch (error) {
    return { ok: false, status: 0, message: `the coordinator could not be reached (${(error as Error).message})` };
  }
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: the status says enough.
  }
  if (response.ok && typeof body === 'object' && body !== null && (body as { ok?: unknown }).ok === true) {
    const path = (body as { path?: unknown }).path;
    return typeof path === 'string' ? { ok: true, path } : { ok: true };
  }
  const detail = typeof body === 'object' && body !== null && typeof (body as { error?: unknown }).error === 'string' ? (body as { error: string }).error : response.statusText;
  return { ok: false, status: response.status, message: detail || `HTTP ${response.status}` };
}

/** What to tell the person about a refused control request. */
export function describeRefusal(action: ControlAction, result: { status: number; message: string }): string {
  if (result.status === 401 || result.status === 403) {
    return `Refused: the coordinator did not accept the token for "${action}" (${result.status}: ${result.message}). Use the token the coordinator printed at start.`;
  }
  if (result.status === 0) return `"${action}" failed: ${result.message}.`;
  return `"${action}" failed (${result.status}: ${result.message}).`;
}
