import type { ErrorCode } from './messages.js';

/**
 * Every refusal this package makes. The code is the one a coordinator puts in its `error`
 * message and maps to a close code, so callers can switch on it instead of parsing text.
 */
export class ProtocolError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProtocolError';
    this.code = code;
  }
}

/**
 * Shows a value that came off the wire, cut short so a hostile peer cannot bloat our logs.
 * Strings are quoted, so `"2"` and `2` read differently in a version mismatch.
 */
export function quote(value: unknown, max = 64): string {
  const text = typeof value === 'string' ? value : String(value);
  const cut = text.length > max ? `${text.slice(0, max)}...` : text;
  return typeof value === 'string' ? JSON.stringify(cut) : cut;
}
