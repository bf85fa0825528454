import { availableParallelism } from 'node:os';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { hugePageBuffer } from './allocator.js';
import { HugePageArena } from './huge-page-arena.js';

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
  /** Buffers some reader holds (`hold`): how many holds, and whether `give` was called meanwhile. */
  readonly #held = new WeakMap<Buffer, { holds: number; given: boolean }>();

  /** Buffers of `size` bytes; at most `keep` idle ones are kept. */
  constructor(
    readonly size: number,
    readonly keep: number,
  ) {}

  /** A buffer of `size` bytes: an idle one given back earlier, else a new one; `give` returns it. */
  take(): Buffer {
    const idle = this.#idle.pop();
    if (idle) return idle;
    // The compressors' input buffers live as long as the process: in huge pages where there are any.
    const buffer =
      (this.size === compressorInputBufferSize ? hugePageBuffer(this.size) : undefined) ??
      Buffer.allocUnsafeSlow(this.size);
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

  /**
   * Gives `buffer` back: the caller no longer reads or writes it, nor does anything it lent it to. A
   * buffer someone still holds (`hold`) is taken back only once the last hold ends.
   */
  give(buffer: Buffer): void {
    const held = this.#held.get(buffer);
    if (held !== undefined) {
      held.given = true;
      return;
    }
    if (buffer.byteLength === this.size && this.#idle.length < this.keep) this.#idle.push(buffer);
  }

  /**
   * Keeps the buffer of this pool that `view` covers whole (see `wholeBufferOf`) from being handed out
   * again until the returned function is called (once): for a reader that reads the buffer on the side
   * while another one, its last, gives it back (a source's chunk hashed on the thread pool while a block
   * compressor compresses it). Undefined when `view` is no whole buffer of this pool.
   */
  hold(view: Uint8Array): (() => void) | undefined {
    const buffer = this.wholeBufferOf(view);
    if (buffer === undefined) return undefined;
    let held = this.#held.get(buffer);
    if (held === undefined) {
      held = { holds: 0, given: false };
      this.#held.set(buffer, held);
    }
    held.holds += 1;
    const state = held;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      state.holds -= 1;
      if (state.holds > 0) return;
      this.#held.delete(buffer);
      if (state.given) this.give(buffer);
    };
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

/**
 * `BufferPool.hold` of the process-wide pool `view` is a whole buffer of (`bufferPoolOf`), else undefined:
 * for a reader of a chunk on the side whose last reader may give its buffer back to that pool.
 */
export function holdPooledBuffer(view: Uint8Array): (() => void) | undefined {
  return pools.get(view.byteLength)?.hold(view);
}

/** Bytes of each buffer of `compressorInputBuffers`: gzip's block size (`defaultGzipBlockSize`). */
export const compressorInputBufferSize = 1024 * 1024;

/**
 * The pool for a source to read a blob's bytes into (`compressorInputBufferSize` bytes a read) when they
 * may be compressed as they are: a chunk that is a whole buffer of it is a gzip block of its own, given
 * back by the block compressor once compressed (`inBlocks`) and, when the copy hashes it on the thread
 * pool as well, once hashed (`SourceCheck` holds it: `holdPooledBuffer`), then read into again. Chunks
 * that go elsewhere (a destination writing them as they are) are garbage as any buffer.
 */
export function compressorInputBuffers(): BufferPool {
  return bufferPoolOf(compressorInputBufferSize);
}

/** A buffer of `size` bytes from `bufferPoolOf(size)` when `pooled`, else a fresh one; `give` returns it. */
export function scratchBuffer(size: number, pooled: boolean): { buffer: Buffer; give: () => void } {
  if (!pooled) return { buffer: Buffer.allocUnsafeSlow(size), give: () => {} };
  const pool = bufferPoolOf(size);
  const buffer = pool.take();
  return { buffer, give: () => pool.give(buffer) };
}

/** What `GarbagePacer` reads of the JavaScript heap, in bytes. */
export interface HeapReading {
  /** The JavaScript heap in use. */
  used: number;
  /** Memory outside the heap held by JavaScript objects (ArrayBuffers), when V8 tells it. */
  external?: number;
}

/** V8's figures (`external_memory` where `v8.getHeapStatistics()` has it, as Node.js 20.20 and 22 do). */
function readHeap(): HeapReading {
  const statistics = getHeapStatistics() as ReturnType<typeof getHeapStatistics> & {
    external_memory?: number;
  };
  return { used: statistics.used_heap_size, external: statistics.external_memory };
}

/**
 * Runs full garbage collections while a copy streams, so that dead buffers do not pile up.
 *
 * V8 frees an ArrayBuffer's memory only when a collection finds it dead, and for memory held outside
 * its heap it starts one only once that memory grew by ~64 MiB since the last collection. A
 * recompressing copy makes a fresh buffer for nearly every chunk (file reads, zlib's output, each
 * compressed block) while its JavaScript heap stays at ~10 MiB, so its memory swung between its live
 * ~40 MiB and that plus 64 MiB of dead chunks: measured on 2 cores, 8 × 64 MiB layers recompressed to a
 * registry peaked at 160–175 MiB RSS, 136–141 MiB with a collection every 12 MiB of growth (~30–45
 * collections of a few milliseconds each per copy; a malloc_trim after each also took ~5 MiB off, for
 * 1.5 s more system time, so it is not done).
 *
 * The stages that make or drop such buffers note their bytes (`note`); every `checkEveryBytes` noted,
 * the pacer reads the heap, and collects when the memory outside the heap grew by `externalGrowthBytes`
 * since the last collection (where V8 does not tell that memory: when that many bytes were noted).
 * Only while the heap in use is below `heapLimitBytes`: a full collection takes time in proportion to
 * the live heap (a few milliseconds at ~10 MiB), so a program embedding Gantry with a large heap of its
 * own is left to V8's pacing.
 *
 * With `onlyWhileRecompressing`, notes count only while a recompression (`whileRecompressing`) or a
 * decompression (`whileDecompressing`) runs: a copy that only compresses (uncompressed layers
 * gzip-compressed for an OCI layout) stays under 150 MiB without the pacing, and there the collections
 * cost ~0.2 s of CPU per copy (measured: docs/performance-notes.md). While only decompressions run, the
 * memory may grow by `decompressionGrowthBytes` between collections: a layer decompressed for its
 * destination makes half the garbage of a recompressed one, and collecting at the recompression's pace
 * cost it ~0.25 s of CPU (registry → docker-archive of 16 × 16 MiB: 101–106 MiB peak at 12 MiB, 116 MiB
 * at 24 MiB with no measurable CPU cost, 151–180 MiB left to V8).
 */
export class GarbagePacer {
  #recompressions = 0;
  #decompressions = 0;
  #notedSinceCheck = 0;
  #notedSinceCollection = 0;
  #externalBase: number | undefined;
  #collections = 0;

  constructor(
    readonly checkEveryBytes: number,
    readonly externalGrowthBytes: number,
    readonly heapLimitBytes: number,
    readonly collector: () => (() => void) | undefined,
    readonly heap: () => HeapReading = readHeap,
    readonly onlyWhileRecompressing = false,
    readonly decompressionGrowthBytes = externalGrowthBytes,
  ) {}

  /** Marks a recompression as running until the returned function is called (once). */
  whileRecompressing(): () => void {
    this.#recompressions += 1;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#recompressions -= 1;
    };
  }

  /** Marks a decompression (nothing compressed again) as running until the returned function is called (once). */
  whileDecompressing(): () => void {
    this.#decompressions += 1;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#decompressions -= 1;
    };
  }

  /** Full collections this pacer ran. */
  get collections(): number {
    return this.#collections;
  }

  /** `bytes` of buffers became (or are about to become) garbage. */
  note(bytes: number): void {
    if (this.onlyWhileRecompressing && this.#recompressions === 0 && this.#decompressions === 0) return;
    this.#notedSinceCheck += bytes;
    this.#notedSinceCollection += bytes;
    if (this.#notedSinceCheck < this.checkEveryBytes) return;
    this.#notedSinceCheck = 0;
    const reading = this.heap();
    if (reading.used >= this.heapLimitBytes) return;
    const growth =
      this.#recompressions > 0 || this.#decompressions === 0
        ? this.externalGrowthBytes
        : this.decompressionGrowthBytes;
    if (reading.external === undefined) {
      if (this.#notedSinceCollection < growth) return;
    } else {
      // A collection V8 ran on its own lowered the memory: grow from there.
      this.#externalBase = Math.min(this.#externalBase ?? reading.external, reading.external);
      if (reading.external - this.#externalBase < growth) return;
    }
    const collect = this.collector();
    if (!collect) return;
    collect();
    this.#collections += 1;
    this.#notedSinceCollection = 0;
    this.#externalBase = this.heap().external;
  }
}

let garbageCollector: (() => void) | null | undefined;

/**
 * V8's full garbage collection as a function (`global.gc` when Node.js runs with `--expose-gc`, else
 * made available the way jest's leak detector does: the flag set at run time, `gc` taken from a new
 * context, the flag set back), or undefined when `GANTRY_GC_PACING=off` or V8 does not give it.
 */
export function fullGarbageCollection(): (() => void) | undefined {
  if (process.env.GANTRY_GC_PACING === 'off') return undefined;
  if (garbageCollector === undefined) {
    garbageCollector = null;
    const existing = (globalThis as { gc?: unknown }).gc;
    if (typeof existing === 'function') {
      garbageCollector = () => (existing as () => void)();
    } else {
      try {
        setFlagsFromString('--expose-gc');
        const collect = runInNewContext('gc') as unknown;
        if (typeof collect === 'function') garbageCollector = collect as () => void;
      } catch {
        // No collection on demand: V8 paces its own.
      } finally {
        setFlagsFromString('--no-expose-gc');
      }
    }
  }
  return garbageCollector ?? undefined;
}

/** The process-wide pacer the compressing stages note their short-lived buffers to (`GarbagePacer`). */
export const transientBuffers = new GarbagePacer(
  4 * 1024 * 1024,
  12 * 1024 * 1024,
  64 * 1024 * 1024,
  fullGarbageCollection,
  readHeap,
  true,
  24 * 1024 * 1024,
);

/**
 * One reader of `ReadBuffers` (a socket), made by `ReadBuffers.reader()`: what the pool learnt of whoever
 * reads the chunks read for it (see `take`).
 */
export interface ReadBufferReader {
  /** A chunk read for it was released. */
  handedBack: boolean;
  /** Large buffers lent to it and not back yet (those left to the garbage collector stay counted). */
  largeOut: number;
}

/** The larger buffers of a `ReadBuffers`, for readers that hand their chunks back. */
export interface LargeReadBuffers {
  /** Bytes of each. */
  size: number;
  /** At most this many idle ones are kept. */
  keep: number;
  /** A reader gets no more large buffers while this many of them are out (not back). */
  maxOut: number;
}

/** What `ReadBuffers` knows of a buffer it lent out. */
interface LentBuffer {
  buffer: Buffer;
  /** Who reads into it (told when its chunks are released). */
  reader: ReadBufferReader | undefined;
  /** One of the large buffers. */
  large: boolean;
  /** A part of it is out for a read (taken, not yet filled). */
  reading: boolean;
  /** Reads may still go into its rest. */
  open: boolean;
  /** Bytes reads put in it, and where the last one ended (reads fill it from its start, in turn). */
  filled: number;
  filledEnd: number;
  /** Where each read into it started (offsets in it, in order). */
  readStarts: number[];
  /** Bytes of it released so far, and the spans released (start, end, in turn; each byte counted once). */
  released: number;
  releasedSpans: number[];
}

/**
 * Buffers to read into (a registry source's socket reads), taken back once every byte read into one was
 * released by the last reader of the chunks made of it (`release`), and then read into again: no fresh
 * memory, no page faults from its first touch and no garbage per read. A read that leaves room in its
 * buffer (at least `minimumRead` bytes) has the next read go into the rest, so a buffer's memory holds
 * reads and nothing else, whether or not its chunks are released.
 *
 * A buffer comes back only when its chunks' bytes were all released, each chunk once: a chunk copied on
 * its way (joined with others), kept by a reader that never releases it (a destination that does not
 * take part, a manifest read into memory) or part of a response's headers leaves its buffer to the
 * garbage collector, as any buffer. Releasing is for the one reader that holds a chunk last: once it
 * called `release`, nothing may read the chunk again (see `PutBlobOptions.chunkWritten`).
 *
 * With `large`, a reader (`take(reader)`) whose chunks were released gets whole buffers of `large.size`
 * bytes: fewer, longer reads, and fewer chunks for every stage after it, while its buffers come back and
 * are read into again. A reader whose chunks nobody releases (its buffers are left to the garbage
 * collector) keeps the smaller ones, which hold less garbage, and so does one with `large.maxOut` large
 * buffers out: its reader stopped handing them back (or holds that many at once).
 *
 * With `arena`, the new buffers taken for a reader (`take(reader)`: a socket's reads) come from it while
 * it has room (`HugePageArena`: memory in huge pages, mapped 2 MiB per page fault), others from
 * `Buffer.allocUnsafeSlow`. The arena holds on to its memory for good: a buffer that never comes back
 * keeps its part of the arena, so what the arena holds is bounded by its size.
 */
export class ReadBuffers {
  readonly #idle: Buffer[] = [];
  readonly #idleLarge: Buffer[] = [];
  /**
   * Where a lent buffer's record is kept: a property of its ArrayBuffer, not a WeakMap entry. V8's
   * scavenges keep a WeakMap's values alive (it resolves them only in full collections), so every lent
   * buffer nobody released would outlive the scavenges that free other dead chunks (measured: oci →
   * ostree, whose destination does not hand chunks back, peaked 131 MiB with a WeakMap, 114 MiB so).
   */
  readonly #key = Symbol('gantry.lentBuffer');
  /** The buffer whose rest the next `take` hands out, and where that rest starts. */
  #rest: { lent: LentBuffer; offset: number } | undefined;
  /**
   * The records of lent buffers taken from `arena`, by the arena's granules they cover (they share one
   * ArrayBuffer, which therefore cannot carry them).
   */
  #arenaRecords: Array<LentBuffer | undefined> = [];

  /** Buffers of `size` bytes (and of `large.size` for readers that hand back); at most `keep` idle ones are kept. */
  constructor(
    readonly size: number,
    readonly keep: number,
    readonly minimumRead: number = Math.min(size, 64 * 1024),
    readonly large?: LargeReadBuffers,
    readonly arena?: HugePageArena,
  ) {}

  /** A new reader to `take` for (a socket). */
  reader(): ReadBufferReader {
    return { handedBack: false, largeOut: 0 };
  }

  /**
   * Memory for one read (the rest of the buffer the last read went into, when it has room, else a whole
   * buffer), lent out until `filled` and the release of all the buffer was filled with. A whole buffer
   * for `reader` is a large one (`large`) once a chunk read for it was released, while fewer than
   * `large.maxOut` of its large buffers are out.
   */
  take(reader?: ReadBufferReader): Buffer {
    const rest = this.#rest;
    if (rest !== undefined) {
      this.#rest = undefined;
      rest.lent.reading = true;
      return rest.lent.buffer.subarray(rest.offset);
    }
    const sizes = this.large;
    const large = sizes !== undefined && reader?.handedBack === true && reader.largeOut < sizes.maxOut;
    // A reader's (a socket's) new buffers come from the arena while it has room.
    const arena = reader !== undefined ? this.arena : undefined;
    let buffer: Buffer;
    if (large) {
      buffer = this.#idleLarge.pop() ?? arena?.take(sizes.size) ?? Buffer.allocUnsafeSlow(sizes.size);
      reader.largeOut += 1;
    } else {
      buffer = this.#idle.pop() ?? arena?.take(this.size) ?? Buffer.allocUnsafeSlow(this.size);
    }
    this.#record(buffer, {
      buffer,
      reader,
      large,
      reading: true,
      open: true,
      filled: 0,
      filledEnd: 0,
      readStarts: [],
      released: 0,
      releasedSpans: [],
    });
    return buffer;
  }

  /** The read into `memory` (from `take`) put `bytes` bytes at its start. */
  filled(memory: Uint8Array, bytes: number): void {
    const lent = this.#recordOf(memory);
    if (lent === undefined || !lent.reading || memory.byteOffset - lent.buffer.byteOffset !== lent.filledEnd)
      return;
    lent.reading = false;
    lent.readStarts.push(lent.filledEnd);
    lent.filled += bytes;
    lent.filledEnd += bytes;
    // A rest offered before and not taken gets no more reads.
    const offered = this.#rest?.lent;
    if (offered !== undefined) this.#close(offered);
    if (lent.buffer.byteLength - lent.filledEnd >= this.minimumRead) {
      this.#rest = { lent, offset: lent.filledEnd };
    } else this.#close(lent);
  }

  /**
   * `chunk`, a view of bytes read into a buffer of this pool (anything else is ignored), is read by
   * nobody any more.
   */
  release(chunk: Uint8Array): void {
    const lent = this.#recordOf(chunk);
    if (lent === undefined || chunk.byteLength === 0) return;
    this.#released(lent, chunk.byteOffset - lent.buffer.byteOffset, chunk.byteLength);
  }

  /** The buffer of this pool that `view` lies in, while it is lent out (not back yet); else undefined. */
  bufferOf(view: Uint8Array): Buffer | undefined {
    return this.#recordOf(view)?.buffer;
  }

  /**
   * The bytes of the read that `chunk` (a view of bytes read into a buffer of this pool; anything else is
   * ignored) lies in, from the read's start up to `chunk`, are read by nobody any more: for the first
   * body chunk of an HTTP/1.1 response on a connection with one request at a time, whose read holds
   * nothing before it but the response's head, which the HTTP parser has done with. Without this a
   * buffer a response's head was read into never comes back.
   */
  releaseReadStart(chunk: Uint8Array): void {
    const lent = this.#recordOf(chunk);
    if (lent === undefined) return;
    const offset = chunk.byteOffset - lent.buffer.byteOffset;
    let start: number | undefined;
    for (const readStart of lent.readStarts) {
      if (readStart > offset) break;
      start = readStart;
    }
    if (start === undefined || start === offset) return;
    this.#released(lent, start, offset - start);
  }

  /**
   * `length` bytes of `lent` from `offset` (in the buffer) were released. A span that overlaps one
   * released before (the same chunk twice) or reaches past what reads put there is ignored: no byte is
   * counted twice, so a buffer never comes back before every byte read into it was released.
   */
  #released(lent: LentBuffer, offset: number, length: number): void {
    const end = offset + length;
    if (end > lent.filledEnd) return;
    const spans = lent.releasedSpans;
    for (let index = 0; index < spans.length; index += 2) {
      if (offset < spans[index + 1]! && spans[index]! < end) return;
    }
    spans.push(offset, end);
    lent.released += length;
    if (lent.reader !== undefined) lent.reader.handedBack = true;
    this.#giveBackWhenReleased(lent);
  }

  /** Records what is known of a lent buffer (`lent` undefined: it is not lent any more). */
  #record(buffer: Uint8Array, lent: LentBuffer | undefined): void {
    const arena = this.arena;
    const slot = arena === undefined ? -1 : arena.slotOf(buffer);
    if (slot < 0) {
      (buffer.buffer as unknown as Record<symbol, LentBuffer | undefined>)[this.#key] = lent;
      return;
    }
    const end = slot + buffer.byteLength / arena!.granule;
    for (let granule = slot; granule < end; granule++) this.#arenaRecords[granule] = lent;
  }

  /** The record of the lent buffer `view` lies in. */
  #recordOf(view: Uint8Array): LentBuffer | undefined {
    const slot = this.arena === undefined ? -1 : this.arena.slotOf(view);
    if (slot < 0) return (view.buffer as unknown as Record<symbol, LentBuffer | undefined>)[this.#key];
    return this.#arenaRecords[slot];
  }

  #close(lent: LentBuffer): void {
    if (this.#rest?.lent === lent) this.#rest = undefined;
    lent.open = false;
    this.#giveBackWhenReleased(lent);
  }

  #giveBackWhenReleased(lent: LentBuffer): void {
    if (lent.reading || lent.open || lent.released < lent.filled) return;
    this.#record(lent.buffer, undefined);
    if (!lent.large) {
      if (this.#idle.length < this.keep) this.#idle.push(lent.buffer);
      return;
    }
    if (lent.reader !== undefined) lent.reader.largeOut -= 1;
    if (this.#idleLarge.length < (this.large?.keep ?? 0)) this.#idleLarge.push(lent.buffer);
  }
}

/** Bytes of the socket read buffers' arena (see `socketReadBuffers`). */
const socketReadArenaBytes = 24 * 1024 * 1024;

/**
 * The process-wide buffers for registry sources' socket reads (`ReadBuffers`): a read takes what the
 * socket has, up to the room left. 512 KiB buffers for a socket whose chunks are handed back (the
 * destination releases them once written: `PutBlobOptions.chunkWritten`), at most 4 of them out per
 * socket (2 MiB: each is fresh memory whose pages the socket reads fault in), 128 KiB ones otherwise;
 * up to 24 MiB of each kept idle — about what the blobs in flight of a copy hold at once. (Measured on 2
 * cores, docs/performance-notes.md: ~0.05–0.1 s less CPU for registry → oci, 7–10 MiB more peak;
 * with 8 out, the extra page faults took the gain back.) A socket whose chunks nobody hands back keeps
 * 128 KiB reads: its buffers are fresh memory that only the garbage collector takes back, and larger
 * ones there raise the peak (registry → docker-archive without its decompressed layers' hand-back:
 * 141 MiB with 512 KiB reads against 115–118 MiB).
 *
 * New buffers for sockets come from a 24 MiB `HugePageArena` (about what a pull's six connections hold
 * at once) while it has room: a 16 × 16 MiB pull then takes ~7,800 page faults instead of ~12,500 and
 * ~0.07 s less CPU, ~5 MiB more peak (docs/performance-notes.md). A blob response's head is released
 * with its first body chunk (`releaseResponseHead`), so the buffer it was read into comes back too.
 */
export const socketReadBuffers = new ReadBuffers(
  128 * 1024,
  192,
  64 * 1024,
  {
    size: 512 * 1024,
    keep: 48,
    maxOut: 4,
  },
  new HugePageArena(socketReadArenaBytes, 128 * 1024),
);

/**
 * `ReadBuffers.releaseReadStart` of the socket read buffers: `firstBodyChunk` is the first body chunk
 * of an HTTP/1.1 response on a connection that carries one request at a time (undici's default), so the
 * bytes before it in its read are the response's head, which nobody reads any more.
 */
export function releaseResponseHead(firstBodyChunk: Uint8Array): void {
  socketReadBuffers.releaseReadStart(firstBodyChunk);
}

/**
 * The process-wide buffers for file sources' reads (`ReadBuffers`, `pooledFileStream`): 1 MiB each (a
 * read of a blob file takes a whole buffer, the last, shorter one leaves its rest to the next read), up
 * to 32 MiB kept idle: about what the blobs in flight of a copy hold at once (the chunks a destination
 * has not written yet and those an upload keeps to resume).
 */
export const fileReadBuffers = new ReadBuffers(1024 * 1024, 32);

/**
 * Gives back `chunk` to the read buffers it was read into (`socketReadBuffers`, `fileReadBuffers`); a
 * chunk of any other memory is ignored. For the last reader of a chunk only (see `ReadBuffers.release`).
 */
export function releaseReadChunk(chunk: Uint8Array): void {
  socketReadBuffers.release(chunk);
  fileReadBuffers.release(chunk);
}
