import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ChorusMetrics } from '../ops/metrics.js';
import type { Coordinator } from '../run/coordinator.js';
import type { AuthThrottle } from './admission.js';

/** Pause, resume, checkpoint now: POST {action} with `Authorization: Bearer <token>`. */
export async function handleControl(
  req: IncomingMessage,
  res: ServerResponse,
  context: { coordinator: Coordinator; metrics: ChorusMetrics; authThrottle: AuthThrottle },
): Promise<void> {
  const reply = (status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (req.method !== 'POST') return reply(405, { error: 'use POST' });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 4096) return reply(413, { error: 'request too large' });
    chunks.push(chunk);
  }
  const { coordinator, metrics, authThrottle } = context;
  const address = req.socket.remoteAddress ?? '?';
  const heldMs = authThrottle.heldFor(address);
  if (heldMs > 0) {
    metrics.connectionsRefused.inc({ reason: 'auth-hold' });
    res.setHeader('retry-after', String(Math.ceil(heldMs / 1000)));
    return reply(429, { error: 'too many wrong tokens from this address; try again later' });
  }
  const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
  if (!coordinator.fleet.checkToken(token)) {
    authThrottle.failure(address);
    coordinator.fleet.refused('bad-token', 'a control request with a wrong or missing token');
    return reply(401, { error: 'wrong or missing token' });
  }
  authThrottle.success(address);
  let action: unknown;
  try {
    action = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { action?: unknown }).action;
  } catch {
    return reply(400, { error: 'body must be JSON: {"action": "pause" | "resume" | "checkpoint"}' });
  }
  switch (action) {
    case 'pause':
      coordinator.setPaused(true);
      return reply(200, { ok: true, paused: true });
    case 'resume':
      coordinator.setPaused(false);
      return reply(200, { ok: true, paused: false });
    case 'checkpoint': {
      const path = await coordinator.checkpoint();
      return path ? reply(200, { ok: true, path }) : reply(409, { error: 'no --checkpoint-dir was given' });
    }
    default:
      return reply(400, { error: `unknown action ${JSON.stringify(action)}; use pause, resume or checkpoint` });
  }
}
