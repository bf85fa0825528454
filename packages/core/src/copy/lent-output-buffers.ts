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

/** What `LentViewBuffers` knows of a buffer it lent out. */
interface LentViews {
  buffer: Buffer;
  /** Bytes written into it and lent out as views, from its start. */
  lent: number;
  /** No more views are lent from it (the writer moved on to another buffer). */
  closed: boolean;
  /** Bytes of it released so far, and where the released views start (each counted once). */
  released: number;
  releasedOffsets: number[];
  /** Readers beside the last one that still read some of its views (`hold`). */
  holds: number;
}

/**
 * Output buffers lent out as several consecutive views each (a streaming decompressor's output: node:zlib
 * fills a buffer over several calls and pushes each call's bytes as a view of it), taken back once the
 * writer closed the buffer and every byte lent from it was released (`release`, the copy's
 * `PutBlobOptions.chunkWritten`) and no other reader holds a view (`hold` / `unhold`: a digest computed
 * on the thread pool after the view was passed on). Then the writer writes into it again instead of
 * into fresh memory.
 *
 * A view released twice counts once; a view copied on its way, kept by a destination that never
 * releases, or a buffer whose writer failed leaves its buffer to the garbage collector, as any buffer.
 */
export class LentViewBuffers {
  readonly #idle: Buffer[] = [];
  /** As in `LentOutputBuffers`: a property of the ArrayBuffer, not a WeakMap entry. */
  readonly #key = Symbol('gantry.lentViews');

  /** Buffers of `size` bytes; at most `keep` idle ones are kept. */
  constructor(
    readonly size: number,
    readonly keep: number,
  ) {}

  /** A buffer of `size` bytes to write into from its start, lent out view by view (`lend`) until `close`. */
  take(): Buffer {
    const buffer = this.#idle.pop() ?? Buffer.allocUnsafeSlow(this.size);
    this.#record(buffer.buffer, {
      buffer,
      lent: 0,
      closed: false,
      released: 0,
      releasedOffsets: [],
      holds: 0,
    });
    return buffer;
  }

  /**
   * `view` (of a buffer from `take`, starting where the last view lent from it ended) is lent out; returns
   * false (and lends nothing) for any other view.
   */
  lend(view: Uint8Array): boolean {
    const lent = this.#recordOf(view.buffer);
    if (lent === undefined || lent.closed || view.byteOffset !== lent.lent) return false;
    lent.lent += view.byteLength;
    return true;
  }

  /** No more views are lent from `buffer`: it comes back once all of them are released. */
  close(buffer: Buffer): void {
    const lent = this.#recordOf(buffer.buffer);
    if (lent === undefined || lent.buffer !== buffer) return;
    lent.closed = true;
    this.#giveBackWhenReleased(lent);
  }

  /** `view`, lent by this pool, is read by one more reader until `unhold`; anything else is ignored. */
  hold(view: Uint8Array): void {
    const lent = this.#recordOf(view.buffer);
    if (lent !== undefined) lent.holds += 1;
  }

  /** Ends `count` holds of views of `view`'s buffer (e.g. a run of adjacent views read together). */
  unhold(view: Uint8Array, count = 1): void {
    const lent = this.#recordOf(view.buffer);
    if (lent === undefined || lent.holds === 0) return;
    lent.holds = Math.max(0, lent.holds - count);
    this.#giveBackWhenReleased(lent);
  }

  /** Whether `view` is memory of a buffer this pool lent out and has not taken back. */
  lends(view: Uint8Array): boolean {
    return this.#recordOf(view.buffer) !== undefined;
  }

  /** `view`, lent by this pool, is read by nobody any more (its last reader is done); anything else is ignored. */
  release(view: Uint8Array): void {
    const lent = this.#recordOf(view.buffer);
    if (lent === undefined || view.byteLength === 0) return;
    if (view.byteOffset + view.byteLength > lent.lent || lent.releasedOffsets.includes(view.byteOffset))
      return;
    lent.releasedOffsets.push(view.byteOffset);
    lent.released += view.byteLength;
    this.#giveBackWhenReleased(lent);
  }

  /** Idle buffers kept now. */
  get idle(): number {
    return this.#idle.length;
  }

  #giveBackWhenReleased(lent: LentViews): void {
    if (!lent.closed || lent.holds > 0 || lent.released < lent.lent) return;
    this.#record(lent.buffer.buffer, undefined);
    if (this.#idle.length < this.keep) this.#idle.push(lent.buffer);
  }

  #record(memory: ArrayBufferLike, lent: LentViews | undefined): void {
    (memory as unknown as Record<symbol, LentViews | undefined>)[this.#key] = lent;
  }

  #recordOf(memory: ArrayBufferLike): LentViews | undefined {
    return (memory as unknown as Record<symbol, LentViews | undefined>)[this.#key];
  }
}

const viewPools = new Map<number, LentViewBuffers>();
/** Idle view-lent buffers kept per size: a few per layer decompressed at once. */
const viewsKeptPerSize = 16;

/** The process-wide view-lent output buffers of `size` bytes (`LentViewBuffers`). */
export function lentViewBuffersOf(size: number): LentViewBuffers {
  let pool = viewPools.get(size);
  if (!pool) {
    pool = new LentViewBuffers(size, viewsKeptPerSize);
    viewPools.set(size, pool);
  }
  return pool;
}

/** `LentViewBuffers.hold` of `view` in whatever pool lent it (none: ignored). */
export function holdLentView(view: Uint8Array): void {
  for (const pool of viewPools.values()) pool.hold(view);
}

/** `LentViewBuffers.unhold` of `view` in whatever pool lent it (none: ignored). */
export function unholdLentView(view: Uint8Array, count = 1): void {
  for (const pool of viewPools.values()) pool.unhold(view, count);
}

/** Whether `view` is memory lent out by a `LentViewBuffers` (see `lentViewBuffersOf`). */
export function isLentView(view: Uint8Array): boolean {
  for (const pool of viewPools.values()) if (pool.lends(view)) return true;
  return false;
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
 * Gives back `chunk`, a compressed block's output lent by a block compressor (`LentOutputBuffers`) or a
 * view of a decompressor's output (`LentViewBuffers`), once its last reader is done with it; any other
 * chunk is ignored. For the destination of a changed layer (`PutBlobOptions.chunkWritten`).
 */
export function releaseCompressedChunk(chunk: Uint8Array): void {
  for (const pool of pools.values()) pool.release(chunk);
  for (const pool of viewPools.values()) pool.release(chunk);
}
