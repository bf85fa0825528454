import { availableParallelism } from 'node:os';

/**
 * Buffers of one size, given back after use and handed out again: the block compressors' scratch
 * space. Reusing them keeps memory flat; fresh megabyte buffers per block would wait for the garbage
 * collector in the meantime (V8 frees an ArrayBuffer only when a collection finds it dead, which for
 * memory held outside its heap it hurries only every few tens of MiB).
 */
export class BufferPool {
  readonly #idle: Buffer[] = [];
  /** The memory of every buffer this pool handed out (and may take back). */
  readonly #own = new WeakMap<ArrayBufferLike, Buffer>();

  /** Buffers of `size` bytes; at most `keep` idle ones are kept. */
  constructor(
    readonly size: number,
    readonly keep: number,
  ) {}

  take(): Buffer {
    const idle = this.#idle.pop();
    if (idle) return idle;
    const buffer = Buffer.allocUnsafeSlow(this.size);
    this.#own.set(buffer.buffer, buffer);
    return buffer;
  }

  /**
   * The buffer of this pool whose memory `view` covers exactly (all of it, from its first byte), else
   * undefined.
   */
  wholeBufferOf(view: Uint8Array): Buffer | undefined {
    if (view.byteOffset !== 0 || view.byteLength !== this.size) return undefined;
    return this.#own.get(view.buffer);
  }

  /** Gives `buffer` back: the caller no longer reads or writes it, nor does anything it lent it to. */
  give(buffer: Buffer): void {
    if (buffer.byteLength === this.size && this.#idle.length < this.keep) this.#idle.push(buffer);
  }
}

const pools = new Map<number, BufferPool>();
/** Buffers kept idle per size: enough for the blocks in flight at once. */
const keptPerSize = Math.max(4, availableParallelism());

/**
 * The process-wide pool of `size`-byte buffers. Callers ask only for the sizes of whole blocks (a
 * layer's last, shorter block gets a buffer of its own), so there are a few sizes.
 */
export function bufferPoolOf(size: number): BufferPool {
  let pool = pools.get(size);
  if (!pool) {
    pool = new BufferPool(size, keptPerSize);
    pools.set(size, pool);
  }
  return pool;
}

/** A buffer of `size` bytes from `bufferPoolOf(size)` when `pooled`, else a fresh one; `give` returns it. */
export function scratchBuffer(size: number, pooled: boolean): { buffer: Buffer; give: () => void } {
  if (!pooled) return { buffer: Buffer.allocUnsafeSlow(size), give: () => {} };
  const pool = bufferPoolOf(size);
  const buffer = pool.take();
  return { buffer, give: () => pool.give(buffer) };
}
