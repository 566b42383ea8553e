import { formatLogLine, type LogFields, type LogLevel } from '@chorus/protocol';

/**
 * Structured logs: one line per event in the format every Chorus process shares
 * (`formatLogLine`, @chorus/protocol), so the coordinator's lines and its local workers' read as
 * one log. Errors go to stderr, the rest to stdout.
 */
export type { LogFields } from '@chorus/protocol';

export interface Logger {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** Noise worth having when chasing a problem (a failed TLS handshake); shown with CHORUS_LOG=debug. */
  debug?(message: string, fields?: LogFields): void;
}

export function createLogger(options: { quiet?: boolean; debug?: boolean; write?: (line: string, level: string) => void } = {}): Logger {
  const debug = options.debug ?? process.env.CHORUS_LOG === 'debug';
  const write =
    options.write ??
    ((line: string, level: string) => (level === 'error' ? process.stderr : process.stdout).write(line + '\n'));
  const emit = (level: LogLevel) => (message: string, fields: LogFields = {}) => {
    if ((options.quiet && level === 'info') || (level === 'debug' && !debug)) return;
    write(formatLogLine(level, message, fields), level);
  };
  return { info: emit('info'), warn: emit('warn'), error: emit('error'), debug: emit('debug') };
}
