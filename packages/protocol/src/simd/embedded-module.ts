/**
 * A small WebAssembly SIMD module embedded as base64, with a scratch memory of its own: the
 * shape of Chorus' vector kernels (the codecs' here, the master state's in @chorus/train).
 * Operands are copied into its memory and results copied out (a 2.3 MB copy is a memcpy of
 * about 0.05 ms, where the kernels save milliseconds), so no view of it outlives a call and a
 * growth of its memory detaches nothing the caller holds. JavaScript is single-threaded per
 * realm and the calls are synchronous, so one module per realm is enough.
 */

/** Below this many values the JavaScript loops are as fast as a call with its copies. */
const MIN_LENGTH = 1024;
const PAGE = 65536;

function decodeBase64(base64: string): Uint8Array<ArrayBuffer> {
  const s = atob(base64);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return bytes;
}

export class EmbeddedSimdModule<Exports extends { memory: WebAssembly.Memory }> {
  private readonly base64: string;
  private instance: Exports | null | undefined;
  private enabled = true;

  constructor(base64: string) {
    this.base64 = base64;
  }

  /** The instantiated module, or null where this engine has no WebAssembly SIMD (compiled on first use). */
  private exports(): Exports | null {
    if (this.instance === undefined) {
      try {
        const bytes = decodeBase64(this.base64);
        // Small modules (under 4 KiB): compiling synchronously is allowed on a page's main thread too.
        this.instance = typeof WebAssembly === 'object' && WebAssembly.validate(bytes)
          ? (new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as unknown as Exports)
          : null;
      } catch {
        this.instance = null;
      }
    }
    return this.instance;
  }

  /** Whether the kernels run on this engine (WebAssembly SIMD present and not turned off). */
  get available(): boolean {
    return this.enabled && this.exports() !== null;
  }

  /** Turns the kernels off or on (tests and benchmarks compare both paths); returns the previous setting. */
  setEnabled(on: boolean): boolean {
    const previous = this.enabled;
    this.enabled = on;
    return previous;
  }

  /**
   * The module for `n` values, with its memory grown to hold `bytes` at 16-byte aligned offsets
   * (returned in order after the module and its buffer), or null to run JavaScript instead:
   * kernels off or missing, `n` too small to pay for the call, or no memory to grow into.
   * Offset 0 stays unused, so a kernel can read a zero pointer as "no such array".
   */
  prepare(n: number, ...bytes: number[]): [Exports, ArrayBuffer, ...number[]] | null {
    if (!this.enabled || n < MIN_LENGTH) return null;
    const k = this.exports();
    if (!k) return null;
    const offsets: number[] = [];
    let end = 16;
    for (const b of bytes) {
      offsets.push(end);
      end += (b + 15) & ~15;
    }
    const have = k.memory.buffer.byteLength;
    if (end > have) {
      try {
        k.memory.grow(Math.ceil((end - have) / PAGE));
      } catch {
        // No memory for the copies: the JavaScript loops need none.
        return null;
      }
    }
    return [k, k.memory.buffer, ...offsets];
  }
}

/** Copies `view`'s bytes into a module's memory at `offset`. */
export function copyIn(buffer: ArrayBuffer, offset: number, view: ArrayBufferView): void {
  new Uint8Array(buffer, offset, view.byteLength).set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
}
