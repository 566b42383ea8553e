/**
 * The longest close reason a WebSocket close frame can carry: the frame's payload is at most
 * 125 bytes, two of which hold the close code (RFC 6455, section 5.5).
 */
export const MAX_CLOSE_REASON_BYTES = 123;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A close reason that always fits: `ws` and browsers throw from close() when the reason is
 * longer than 123 UTF-8 bytes, and a reason often quotes text a peer sent, so its byte length
 * is the peer's choice. Cuts on a character boundary and marks the cut with "...". Lone
 * surrogates become U+FFFD, as any UTF-8 encoding of them would.
 */
export function closeReason(reason: string): string {
  const bytes = encoder.encode(reason);
  if (bytes.length <= MAX_CLOSE_REASON_BYTES) return decoder.decode(bytes);
  let cut = MAX_CLOSE_REASON_BYTES - 3;
  // Back up over continuation bytes (10xxxxxx) so no UTF-8 sequence is split.
  while (cut > 0 && (bytes[cut] & 0xc0) === 0x80) cut--;
  return `${decoder.decode(bytes.subarray(0, cut))}...`;
}
