/**
 * Output buffers of the block compressors (`parallelGzipStage` through libdeflate), lent out with the
 * compressed bytes in them and taken back once the destination wrote those bytes
 * (`releaseCompressedChunk`, the copy's `PutBlobOptions.chunkWritten`): the next blocks are compressed
 * into the same memory instead of fresh buffers. A fresh buffer costs a page fault for each 4 KiB the
 * compressor writes and is garbage once sent on: measured on 2 cores, libdeflate's level 2 over 64 MiB
 * in 1 MiB blocks took ~13 % more CPU writing into fresh buffers (~2,000–6,000 page faults) than into
 * one reused buffer, and the garbage made the copy's collections (`GarbagePacer`) more frequent.
 *
 * A lent buffer comes back only through the very chunk it was lent as (`release` of that `Uint8Array`
 * view, once): a chunk copied on its way, or kept by a destination that never releases, leaves its
 * buffer to the garbage collector, as any buffer.
 */
export class LentOutputBuffers {
  readonly #idle: Buffer[] = [];
  /**
   * Where a lent buffer's chunk is recorded: a property of its ArrayBuffer (as `ReadBuffers` does), not a
   * WeakMap entry, which V8's scavenges would keep alive until a full collection.
   */
  readonly #key = Symbol('gantry.lentOutput');

  /** Buffers of `size` bytes; at most `keep` idle ones are kept. */
  constructor(
    readonly size: number,
    readonly keep: number,
  ) {}

  /** A buffer of `size` bytes to compress into: `lend` or `giveBack` it once the compressor is done. */
  take(): Buffer {
    return this.#idle.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** `buffer` (from `take`) is not lent out after all (the compression failed): it is idle again. */
  giveBack(buffer: Buffer): void {
    if (buffer.byteLength === this.size && this.#idle.length < this.keep) this.#idle.push(buffer);
  }

  /**
   * The first `length` bytes of `buffer` (from `take`) as the chunk lent out: `release` of this very
   * view gives the buffer back.
   */
  lend(buffer: Buffer, length: number): Buffer {
    const chunk = buffer.subarray(0, length);
    this.#record(buffer.buffer, { buffer, chunk });
    return chunk;
  }

  /**
   * `chunk` is read by nobody any more: when it is a chunk this pool lent (the same view, not yet
   * released), its buffer may be compressed into again. Anything else is ignored.
   */
  release(chunk: Uint8Array): void {
    const lent = this.#recordOf(chunk.buffer);
    if (lent === undefined || lent.chunk !== chunk) return;
    this.#record(chunk.buffer, undefined);
    this.giveBack(lent.buffer);
  }

  /** Idle buffers kept now. */
  get idle(): number {
    return this.#idle.length;
  }

  #record(memory: ArrayBufferLike, lent: { buffer: Buffer; chunk: Uint8Array } | undefined): void {
    (memory as unknown as Record<symbol, unknown>)[this.#key] = lent;
  }

  #recordOf(memory: ArrayBufferLike): { buffer: Buffer; chunk: Uint8Array } | undefined {
    return (memory as unknown as Record<symbol, { buffer: Buffer; chunk: Uint8Array } | undefined>)[
      this.#key
    ];
  }
}

const pools = new Map<number, LentOutputBuffers>();
/**
 * Idle output buffers kept per size: the blocks in flight, those an upload holds until the registry
 * has them (its resume window, see transport-docker's `putBlob`) come back a few at a time.
 */
const keptPerSize = 16;

/** The process-wide lent output buffers of `size` bytes (`LentOutputBuffers`). */
export function lentOutputBuffersOf(size: number): LentOutputBuffers {
  let pool = pools.get(size);
  if (!pool) {
    pool = new LentOutputBuffers(size, keptPerSize);
    pools.set(size, pool);
  }
  return pool;
}

/**
 * Gives back `chunk`, a compressed block's output lent by a block compressor (`LentOutputBuffers`), once
 * its last reader is done with it; any other chunk is ignored. For the destination of a compressed
 * layer (`PutBlobOptions.chunkWritten`).
 */
export function releaseCompressedChunk(chunk: Uint8Array): void {
  for (const pool of pools.values()) pool.release(chunk);
}
