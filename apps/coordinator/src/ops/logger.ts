/**
 * Structured logs: one line per event, `time level message key=value ...` (logfmt), easy to
 * read and to grep or parse. Errors go to stderr, the rest to stdout.
 */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** Noise worth having when chasing a problem (a failed TLS handshake); shown with CHORUS_LOG=debug. */
  debug?(message: string, fields?: LogFields): void;
}

function format(value: string | number | boolean | null | undefined): string {
  const text = String(value);
  return /^[\w.:/@+-]*$/.test(text) && text.length > 0 ? text : JSON.stringify(text);
}

export function createLogger(options: { quiet?: boolean; debug?: boolean; write?: (line: string, level: string) => void } = {}): Logger {
  const debug = options.debug ?? process.env.CHORUS_LOG === 'debug';
  const write =
    options.write ??
    ((line: string, level: string) => (level === 'error' ? process.stderr : process.stdout).write(line + '\n'));
  const emit = (level: string) => (message: string, fields: LogFields = {}) => {
    if ((options.quiet && level === 'info') || (level === 'debug' && !debug)) return;
    const kv = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${format(v)}`)
      .join(' ');
    write(`${new Date().toISOString()} ${level.padEnd(5)} ${message}${kv ? ' ' + kv : ''}`, level);
  };
  return { info: emit('info'), warn: emit('warn'), error: emit('error'), debug: emit('debug') };
}
