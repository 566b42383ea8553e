import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { WsTlsOptions } from './ws-transport.js';

/**
 * The preset the coordinator trains, read from its /api/status (no token needed), so the
 * backend choice can time a step of the model this worker will actually train. It must be
 * known before the hello, which reports the chosen backend; measuring after the welcome would
 * leave the coordinator assigning shards to a worker that is still measuring. The request
 * carries nothing secret, and with a pinned certificate the answer is only believed after the
 * pin matched. Resolves null (with the reason) when the coordinator cannot be asked.
 */
export function fetchRunPreset(wsUrl: string, tls: WsTlsOptions = {}, timeoutMs = 5000): Promise<{ preset: string | null; error?: string }> {
  const url = new URL(wsUrl.replace(/^ws/, 'http'));
  url.pathname = url.pathname.replace(/\/ws$/, '') + '/api/status';
  const secure = url.protocol === 'https:';
  return new Promise((resolve) => {
    const done = (preset: string | null, error?: string) => resolve(error === undefined ? { preset } : { preset, error });
    const options = secure
      ? { timeout: timeoutMs, ...(tls.ca !== undefined ? { ca: tls.ca } : {}), ...(tls.certFingerprint ? { rejectUnauthorized: false } : {}) }
      : { timeout: timeoutMs };
    const req = (secure ? httpsGet : httpGet)(url, options, (res) => {
      if (secure && tls.certFingerprint) {
        const got = (res.socket as TLSSocket).getPeerCertificate?.().fingerprint256;
        if (got?.toUpperCase() !== tls.certFingerprint.toUpperCase()) {
          res.destroy();
          return done(null, 'the certificate is not the pinned one');
        }
      }
      if (res.statusCode !== 200) {
        res.resume();
        return done(null, `GET ${url.pathname} answered ${res.statusCode}`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        // The status carries recent history; the preset is all that is needed, so cap it.
        if (size > 16 * 1024 * 1024) return res.destroy(new Error('status too large'));
        chunks.push(chunk);
      });
      res.on('error', (error) => done(null, error.message));
      res.on('end', () => {
        try {
          const preset = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { preset?: unknown }).preset;
          done(typeof preset === 'string' ? preset : null, typeof preset === 'string' ? undefined : 'no preset in the status');
        } catch (error) {
          done(null, (error as Error).message);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (error) => done(null, error.message));
  });
}
