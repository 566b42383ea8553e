/**
 * A small WebAssembly SIMD module embedded as base64: the shape of Chorus' vector kernels (the
 * codecs' here, the master state's in @chorus/train).
 *
 * Operands live in the module's memory while a kernel runs. By default they are copied into a
 * scratch memory and the results copied out (a 2.3 MB copy is a memcpy of about 0.05-0.2 ms,
 * where the kernels save milliseconds), so no view of that memory outlives a call and its
 * growth detaches nothing the caller holds.
 *
 * Arrays that an owner keeps for a whole run and hands to kernel after kernel (the
 * coordinator's batch sum, master weights and public weights, a worker's error-feedback
 * residual) can instead be *resident*: allocated in an arena, a separate instance of the
 * module whose memory is sized once and never grows, so plain typed-array views of it stay
 * valid. A kernel call whose operand lies in an arena runs on that arena's instance and uses
 * the operand where it lies: no copy in or out. Anything else is copied as before, and with
 * the kernels off the arrays are ordinary memory to the JavaScript loops.
 *
 * JavaScript is single-threaded per realm and the calls are synchronous, so one scratch
 * instance per module and realm is enough.
 */

/** Below this many values the JavaScript loops are as fast as a call with its copies. */
const MIN_LENGTH = 1024;
const PAGE = 65536;
/** Offset 0 stays unused, so a kernel can read a zero pointer as "no such array". */
const FIRST = 16;

const align16 = (bytes: number) => (bytes + 15) & ~15;

function decodeBase64(base64: string): Uint8Array<ArrayBuffer> {
  const s = atob(base64);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return bytes;
}

/** An operand the kernel only writes: placed where it lies if resident, else in scratch without copying it in. */
export interface KernelOutput {
  output: ArrayBufferView;
}

/**
 * What a kernel call needs in the module's memory: a number is scratch of that many bytes, a
 * view is an input (copied in unless resident), `{ output }` an array the kernel writes.
 */
export type KernelOperand = number | ArrayBufferView | KernelOutput;

/** One instance of the module and where its scratch space begins. */
interface KernelInstance<Exports> {
  exports: Exports;
  scratchStart: number;
  /** False for an arena: its memory must never grow, or the views of its resident arrays detach. */
  growable: boolean;
}

export class EmbeddedSimdModule<Exports extends { memory: WebAssembly.Memory }> {
  private readonly base64: string;
  private compiled: WebAssembly.Module | null | undefined;
  private scratch: KernelInstance<Exports> | null | undefined;
  private enabled = true;
  /** The arenas, by their memory's buffer (an arena's memory never grows, so its buffer stays). */
  private readonly arenas = new WeakMap<ArrayBuffer, KernelInstance<Exports>>();

  constructor(base64: string) {
    this.base64 = base64;
  }

  /** The compiled module, or null where this engine has no WebAssembly SIMD (compiled on first use). */
  private module(): WebAssembly.Module | null {
    if (this.compiled === undefined) {
      try {
        const bytes = decodeBase64(this.base64);
        // Small modules (under 4 KiB): compiling synchronously is allowed on a page's main thread too.
        this.compiled = typeof WebAssembly === 'object' && WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
      } catch {
        this.compiled = null;
      }
    }
    return this.compiled;
  }

  /** A fresh instance of the module with at least `bytes` of memory, or null. */
  private instantiate(bytes: number): Exports | null {
    const module = this.module();
    if (!module) return null;
    try {
      const exports = new WebAssembly.Instance(module).exports as unknown as Exports;
      const have = exports.memory.buffer.byteLength;
      if (bytes > have) exports.memory.grow(Math.ceil((bytes - have) / PAGE));
      return exports;
    } catch {
      return null;
    }
  }

  private scratchInstance(): KernelInstance<Exports> | null {
    if (this.scratch === undefined) {
      const exports = this.instantiate(0);
      this.scratch = exports ? { exports, scratchStart: FIRST, growable: true } : null;
    }
    return this.scratch;
  }

  /** Whether the kernels run on this engine (WebAssembly SIMD present and not turned off). */
  get available(): boolean {
    return this.enabled && this.module() !== null;
  }

  /** Turns the kernels off or on (tests and benchmarks compare both paths); returns the previous setting. */
  setEnabled(on: boolean): boolean {
    const previous = this.enabled;
    this.enabled = on;
    return previous;
  }

  /**
   * An allocator of resident arrays (see the file comment) of `arrayBytes` each, with room for
   * `scratchBytes` of operands copied in beside them (a call that needs more copies nothing and
   * runs JavaScript). Where the kernels cannot run, the arrays are ordinary ones.
   */
  arena(arrayBytes: readonly number[], scratchBytes: number): ResidentArrays {
    const residentBytes = arrayBytes.reduce((a, b) => a + align16(b), 0);
    // Arrays too short for the kernels stay ordinary: every arena is a memory of its own, whose
    // address-space reservation only the garbage collector gives back.
    const worthIt = Math.max(0, ...arrayBytes) >= 4 * MIN_LENGTH;
    const exports = worthIt && this.available ? this.instantiate(FIRST + residentBytes + align16(scratchBytes)) : null;
    if (!exports) return new ResidentArrays(null, FIRST, FIRST + residentBytes);
    const instance = { exports, scratchStart: FIRST + residentBytes, growable: false };
    this.arenas.set(exports.memory.buffer, instance);
    return new ResidentArrays(exports.memory.buffer, FIRST, instance.scratchStart);
  }

  /**
   * The module for `n` values with every operand placed in its memory, and their byte offsets
   * in order after the module and its buffer; or null to run JavaScript instead: kernels off or
   * missing, `n` too small to pay for the call, or no memory to place the operands in.
   * The call runs in the arena of its first resident operand, if any, where resident operands
   * are used in place; other inputs are copied in, outputs only given room. So an output may
   * be an input's very array (encoding in place): every kernel reads an element before it
   * writes the same element of an output, and never reads it again. An output that overlaps
   * another operand where it lies but starts elsewhere gets room of its own, and is copied out.
   */
  prepare(n: number, ...operands: KernelOperand[]): [Exports, ArrayBuffer, ...number[]] | null {
    if (!this.enabled || n < MIN_LENGTH) return null;
    let instance: KernelInstance<Exports> | null | undefined;
    for (const o of operands) {
      const view = typeof o === 'number' ? null : 'output' in o ? o.output : o;
      instance = view ? this.arenas.get(view.buffer as ArrayBuffer) : undefined;
      if (instance) break;
    }
    instance ??= this.scratchInstance();
    if (!instance) return null;
    const { exports: k, scratchStart } = instance;
    const home = k.memory.buffer;
    const offsets: number[] = [];
    const copies: [number, ArrayBufferView][] = [];
    let end = scratchStart;
    const room = (bytes: number) => {
      offsets.push(end);
      end += align16(bytes);
    };
    for (const o of operands) {
      if (typeof o === 'number') {
        room(o);
        continue;
      }
      const isOutput = 'output' in o;
      const view = isOutput ? o.output : o;
      if (view.buffer === home && !(isOutput && operands.some((other) => overlapsShifted(view, other)))) {
        offsets.push(view.byteOffset);
      } else {
        if (!isOutput) copies.push([end, view]);
        room(view.byteLength);
      }
    }
    if (end > home.byteLength) {
      if (!instance.growable) return null;
      try {
        k.memory.grow(Math.ceil((end - home.byteLength) / PAGE));
      } catch {
        // No memory for the copies: the JavaScript loops need none.
        return null;
      }
    }
    const buffer = k.memory.buffer;
    for (const [offset, view] of copies) copyIn(buffer, offset, view);
    return [k, buffer, ...offsets];
  }
}

/** Whether operand `other` shares bytes with `view` but starts elsewhere (the same array is fine). */
function overlapsShifted(view: ArrayBufferView, other: KernelOperand): boolean {
  if (typeof other === 'number') return false;
  const o = 'output' in other ? other.output : other;
  return o.buffer === view.buffer && o.byteOffset !== view.byteOffset && o.byteOffset < view.byteOffset + view.byteLength && view.byteOffset < o.byteOffset + o.byteLength;
}

/**
 * Arrays allocated once, resident in an arena of a module (see EmbeddedSimdModule.arena), or
 * ordinary arrays where there is none. Each allocation is 16-byte aligned.
 */
export class ResidentArrays {
  private readonly buffer: ArrayBuffer | null;
  private next: number;
  private readonly end: number;

  constructor(buffer: ArrayBuffer | null, start: number, end: number) {
    this.buffer = buffer;
    this.next = start;
    this.end = end;
  }

  /** Whether the arrays are resident in a module's memory (false: ordinary arrays). */
  get resident(): boolean {
    return this.buffer !== null;
  }

  f32(n: number): Float32Array<ArrayBuffer> {
    return this.buffer ? new Float32Array(this.buffer, this.take(4 * n), n) : new Float32Array(n);
  }

  u8(n: number): Uint8Array<ArrayBuffer> {
    return this.buffer ? new Uint8Array(this.buffer, this.take(n), n) : new Uint8Array(n);
  }

  private take(bytes: number): number {
    const at = this.next;
    if (at + bytes > this.end) throw new Error(`resident arrays: ${bytes} bytes more than the ${this.end - at} left of the arena`);
    this.next = at + align16(bytes);
    return at;
  }
}

/** Copies `view`'s bytes into a module's memory at `offset`. */
export function copyIn(buffer: ArrayBuffer, offset: number, view: ArrayBufferView): void {
  new Uint8Array(buffer, offset, view.byteLength).set(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
}

/** Copies a kernel's result at `offset` back into `target`, unless `target` is that very memory (resident). */
export function copyOut(buffer: ArrayBuffer, offset: number, target: ArrayBufferView): void {
  if (target.buffer === buffer && target.byteOffset === offset) return;
  new Uint8Array(target.buffer, target.byteOffset, target.byteLength).set(new Uint8Array(buffer, offset, target.byteLength));
}
