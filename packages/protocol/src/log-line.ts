/**
 * One log line, the same for every Chorus process (coordinator, Node workers, a tab's log):
 * `<ISO time> <level padded to 5> <message> key=value ...` (logfmt), so that the coordinator's
 * output with its --local-workers reads as one log, easy to grep or parse. Platform-neutral
 * and dependency-free: the /join page bundles it on its own.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type LogFields = Record<string, string | number | boolean | null | undefined>;

/** A value as logfmt writes it: bare when it is a plain token, else JSON-quoted. */
export function formatLogValue(value: string | number | boolean | null): string {
  const text = String(value);
  return /^[\w.:/@+-]*$/.test(text) && text.length > 0 ? text : JSON.stringify(text);
}

/** The line, without a newline. Fields whose value is undefined are left out. */
export function formatLogLine(level: LogLevel, message: string, fields: LogFields = {}, time: Date = new Date()): string {
  const kv = Object.entries(fields)
    .filter((entry): entry is [string, string | number | boolean | null] => entry[1] !== undefined)
    .map(([k, v]) => `${k}=${formatLogValue(v)}`)
    .join(' ');
  return `${time.toISOString()} ${level.padEnd(5)} ${message}${kv ? ' ' + kv : ''}`;
}
