import { describe, expect, it } from 'vitest';
import {
  BufferPool,
  bufferPoolOf,
  compressorInputBuffers,
  fileReadBuffers,
  fullGarbageCollection,
  GarbagePacer,
  holdPooledBuffer,
  ReadBuffers,
  releaseReadChunk,
  scratchBuffer,
  socketReadBuffers,
} from './buffer-pool.js';
import { HugePageArena, type HugePageSystem, hugePageBytes } from './huge-page-arena.js';
import { defaultGzipBlockSize } from './parallel-gzip.js';

describe('BufferPool', () => {
  it('hands a given-back buffer out again, and keeps at most `keep` idle ones', () => {
    const pool = new BufferPool(4096, 1);
    const first = pool.take();
    const second = pool.take();
    expect(first).not.toBe(second);
    pool.give(first);
    pool.give(second); // Beyond `keep`: dropped.
    expect(pool.take()).toBe(first);
    expect(pool.take()).not.toBe(second);
  });

  it('recognises its own buffers only when a view covers all of one', () => {
    const pool = new BufferPool(4096, 4);
    const buffer = pool.take();
    expect(pool.wholeBufferOf(buffer)).toBe(buffer);
    expect(pool.wholeBufferOf(new Uint8Array(buffer.buffer, 0, 4096))).toBe(buffer);
    expect(pool.wholeBufferOf(buffer.subarray(0, 4095))).toBeUndefined();
    expect(pool.wholeBufferOf(buffer.subarray(1))).toBeUndefined();
    expect(pool.wholeBufferOf(Buffer.allocUnsafeSlow(4096))).toBeUndefined();
    expect(new BufferPool(4096, 4).wholeBufferOf(buffer)).toBeUndefined();
  });

  it('gives one process-wide pool per size, which scratch buffers come from and go back to', () => {
    const size = 12_345;
    expect(bufferPoolOf(size)).toBe(bufferPoolOf(size));
    const scratch = scratchBuffer(size, true);
    expect(bufferPoolOf(size).wholeBufferOf(scratch.buffer)).toBe(scratch.buffer);
    scratch.give();
    expect(bufferPoolOf(size).take()).toBe(scratch.buffer);
    const unpooled = scratchBuffer(size, false);
    expect(bufferPoolOf(size).wholeBufferOf(unpooled.buffer)).toBeUndefined();
  });

  it('takes a buffer given back while held only once every hold ended', () => {
    const pool = new BufferPool(4096, 4);
    const buffer = pool.take();
    const endFirst = pool.hold(buffer)!;
    const endSecond = pool.hold(new Uint8Array(buffer.buffer, 0, 4096))!;
    pool.give(buffer);
    const other = pool.take();
    expect(other).not.toBe(buffer);
    endFirst();
    endFirst(); // Once only.
    expect(pool.take()).not.toBe(buffer);
    endSecond();
    expect(pool.take()).toBe(buffer);
    // Holds that end before the give leave it to the give.
    pool.hold(other)!();
    pool.give(other);
    expect(pool.take()).toBe(other);
    // Not a whole buffer of the pool: nothing to hold.
    expect(pool.hold(buffer.subarray(1))).toBeUndefined();
    expect(pool.hold(Buffer.allocUnsafeSlow(4096))).toBeUndefined();
  });

  it('holds whole buffers of the process-wide pools (`holdPooledBuffer`), from the compressor input pool among them', () => {
    const pool = compressorInputBuffers();
    expect(pool.size).toBe(defaultGzipBlockSize);
    expect(bufferPoolOf(defaultGzipBlockSize)).toBe(pool);
    const buffer = pool.take();
    const end = holdPooledBuffer(buffer)!;
    pool.give(buffer);
    const next = pool.take();
    expect(next).not.toBe(buffer);
    end();
    expect(pool.take()).toBe(buffer);
    pool.give(next);
    pool.give(buffer);
    expect(holdPooledBuffer(Buffer.allocUnsafeSlow(777))).toBeUndefined();
  });
});

describe('GarbagePacer', () => {
  const mib = 1024 * 1024;

  /** A pacer over a simulated heap whose collections drop the external memory to `live`. */
  function simulated(
    options: {
      external?: boolean;
      usedHeap?: number;
      onlyWhileRecompressing?: boolean;
      decompressionGrowth?: number;
    } = {},
  ) {
    const heap = { used: options.usedHeap ?? 10 * mib, external: 20 * mib, live: 20 * mib };
    let collections = 0;
    const pacer = new GarbagePacer(
      4 * mib,
      24 * mib,
      64 * mib,
      () => () => {
        collections += 1;
        heap.external = heap.live;
      },
      () => ({ used: heap.used, ...(options.external === false ? {} : { external: heap.external }) }),
      options.onlyWhileRecompressing === true,
      options.decompressionGrowth,
    );
    /** `bytes` of new buffers that became garbage at once. */
    const garbage = (bytes: number): void => {
      heap.external += bytes;
      pacer.note(bytes);
    };
    return { heap, pacer, garbage, collections: () => collections };
  }

  it('with onlyWhileRecompressing, counts notes only while a recompression runs', () => {
    const { pacer, garbage, collections } = simulated({ onlyWhileRecompressing: true });
    for (let index = 0; index < 20; index += 1) garbage(4 * mib); // +80 MiB, no recompression running.
    expect(collections()).toBe(0);
    const end = pacer.whileRecompressing();
    const other = pacer.whileRecompressing();
    for (let index = 0; index < 8; index += 1) garbage(4 * mib);
    expect(collections()).toBe(1);
    end();
    end(); // Ending twice ends one recompression only: the other still runs.
    for (let index = 0; index < 8; index += 1) garbage(4 * mib);
    expect(collections()).toBe(2);
    other();
    for (let index = 0; index < 20; index += 1) garbage(4 * mib);
    expect(collections()).toBe(2);
  });

  it('while only decompressions run, collects at their own growth; a recompression brings back its own', () => {
    const { pacer, garbage, collections } = simulated({
      onlyWhileRecompressing: true,
      decompressionGrowth: 48 * mib,
    });
    const endDecompression = pacer.whileDecompressing();
    garbage(4 * mib); // Base: 24 MiB.
    for (let index = 0; index < 11; index += 1) garbage(4 * mib); // +44 MiB: below 48.
    expect(collections()).toBe(0);
    garbage(4 * mib); // +48 MiB.
    expect(collections()).toBe(1);
    const endRecompression = pacer.whileRecompressing();
    for (let index = 0; index < 6; index += 1) garbage(4 * mib); // +24 MiB: the recompression's growth.
    expect(collections()).toBe(2);
    endRecompression();
    endDecompression();
    endDecompression(); // Once only.
    for (let index = 0; index < 30; index += 1) garbage(4 * mib);
    expect(collections()).toBe(2);
  });

  it('collects once the memory outside the heap grew by the growth since the last collection', () => {
    const { pacer, garbage, collections, heap } = simulated();
    garbage(4 * mib); // The first reading (24 MiB) is where growth counts from.
    for (let index = 0; index < 5; index += 1) garbage(4 * mib); // +20 MiB: below the growth.
    expect(collections()).toBe(0);
    garbage(4 * mib); // +24 MiB.
    expect(collections()).toBe(1);
    expect(heap.external).toBe(20 * mib);
    for (let index = 0; index < 12; index += 1) garbage(4 * mib);
    expect(collections()).toBe(3);
    expect(pacer.collections).toBe(3);
  });

  it('reads the heap only every `checkEveryBytes` noted', () => {
    const { heap, garbage, collections } = simulated();
    garbage(4 * mib);
    heap.external += 100 * mib; // Garbage made elsewhere, not noted.
    garbage(1 * mib);
    expect(collections()).toBe(0);
    garbage(3 * mib);
    expect(collections()).toBe(1);
  });

  it('grows from a lower point when V8 collected on its own', () => {
    const { heap, garbage, collections } = simulated();
    garbage(4 * mib); // Base: 24 MiB.
    heap.external = 10 * mib; // V8's own collection.
    garbage(4 * mib); // 14 MiB: the base follows down.
    for (let index = 0; index < 5; index += 1) garbage(4 * mib); // 34 MiB: +20.
    expect(collections()).toBe(0);
    garbage(4 * mib); // 38 MiB: +24.
    expect(collections()).toBe(1);
  });

  it('counts noted bytes where V8 does not tell the memory outside the heap', () => {
    const { garbage, collections } = simulated({ external: false });
    for (let index = 0; index < 5; index += 1) garbage(4 * mib);
    expect(collections()).toBe(0);
    garbage(4 * mib);
    expect(collections()).toBe(1);
    for (let index = 0; index < 6; index += 1) garbage(4 * mib);
    expect(collections()).toBe(2);
  });

  it('leaves a large heap to V8', () => {
    const { garbage, collections } = simulated({ usedHeap: 200 * mib });
    for (let index = 0; index < 50; index += 1) garbage(4 * mib);
    expect(collections()).toBe(0);
  });

  it('collects nothing when no collector is available', () => {
    let readings = 0;
    const pacer = new GarbagePacer(
      1,
      1,
      64 * mib,
      () => undefined,
      () => {
        readings += 1;
        return { used: 0, external: (readings * 100) % 1000 };
      },
    );
    for (let index = 0; index < 10; index += 1) pacer.note(mib);
    expect(pacer.collections).toBe(0);
  });
});

describe('fullGarbageCollection', () => {
  it("runs V8's full collection, which frees the memory of dead ArrayBuffers", async () => {
    const collect = fullGarbageCollection();
    expect(collect).toBeTypeOf('function');
    let buffers: Buffer[] | undefined = Array.from({ length: 16 }, () =>
      Buffer.allocUnsafeSlow(4 * 1024 * 1024),
    );
    // Read with the 64 MiB alive (V8 may collect other garbage while they are made).
    const whileAlive = process.memoryUsage().arrayBuffers;
    buffers.length = 0;
    buffers = undefined;
    collect!();
    // V8 may free the memory of the collected buffers on a background thread: wait for it (other code
    // may allocate a little meanwhile).
    const freed = (): boolean => process.memoryUsage().arrayBuffers <= whileAlive - 60 * 1024 * 1024;
    for (let attempt = 0; attempt < 500 && !freed(); attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(process.memoryUsage().arrayBuffers).toBeLessThanOrEqual(whileAlive - 60 * 1024 * 1024);
  });

  it('is undefined with GANTRY_GC_PACING=off', () => {
    const saved = process.env.GANTRY_GC_PACING;
    process.env.GANTRY_GC_PACING = 'off';
    try {
      expect(fullGarbageCollection()).toBeUndefined();
    } finally {
      if (saved === undefined) delete process.env.GANTRY_GC_PACING;
      else process.env.GANTRY_GC_PACING = saved;
    }
  });
});

describe('releaseReadChunk', () => {
  it('gives a chunk back to the read buffers it came from, socket or file; other memory is ignored', () => {
    const fromFile = fileReadBuffers.take();
    fileReadBuffers.filled(fromFile, fromFile.byteLength);
    const fromSocket = socketReadBuffers.take();
    socketReadBuffers.filled(fromSocket, fromSocket.byteLength);
    releaseReadChunk(Buffer.alloc(10));
    releaseReadChunk(fromFile);
    releaseReadChunk(fromSocket);
    expect(fileReadBuffers.take().buffer).toBe(fromFile.buffer);
    expect(socketReadBuffers.take().buffer).toBe(fromSocket.buffer);
  });
});

describe('ReadBuffers', () => {
  it('takes a buffer back once every byte read into it was released, each chunk once', () => {
    const pool = new ReadBuffers(1024, 4);
    const buffer = pool.take();
    pool.filled(buffer, 600);
    const head = buffer.subarray(0, 100);
    const body = buffer.subarray(100, 600);
    pool.release(body);
    // The same chunk twice counts once; a view of other memory is ignored.
    pool.release(body);
    pool.release(Buffer.alloc(100));
    expect(pool.take()).not.toBe(buffer);
    pool.release(new Uint8Array(head.buffer, head.byteOffset, head.byteLength));
    expect(pool.take()).toBe(buffer);
  });

  it('never takes back a buffer whose read is not done, or with bytes nobody released', () => {
    const pool = new ReadBuffers(1024, 4);
    const unfilled = pool.take();
    pool.release(unfilled.subarray(0, 10));
    const partly = pool.take();
    pool.filled(partly, 100);
    pool.release(partly.subarray(0, 50));
    // Bytes past what the read put there are not the read's.
    pool.release(partly.subarray(50, 200));
    const next = pool.take();
    expect(next).not.toBe(unfilled);
    expect(next).not.toBe(partly);
  });

  it("has the next read go into the rest of a buffer with room, and takes it back after all its reads' bytes", () => {
    const pool = new ReadBuffers(1024, 4, 256);
    const buffer = pool.take();
    pool.filled(buffer, 300);
    const rest = pool.take();
    expect(rest.buffer).toBe(buffer.buffer);
    expect(rest.byteOffset).toBe(300);
    pool.release(buffer.subarray(0, 300));
    // The rest is out for a read: not back yet.
    expect(pool.take().buffer).not.toBe(buffer.buffer);
    pool.filled(rest, 500);
    // Less than `minimumRead` left: no more reads go into it.
    expect(pool.take().buffer).not.toBe(buffer.buffer);
    pool.release(rest.subarray(0, 500));
    expect(pool.take()).toBe(buffer);
  });

  it('gives a reader large buffers once its chunks are released, while fewer than `maxOut` are out', () => {
    const pool = new ReadBuffers(1024, 4, 256, { size: 4096, keep: 4, maxOut: 2 });
    const reader = pool.reader();
    // Nothing of it released yet: small buffers.
    const first = pool.take(reader);
    expect(first.byteLength).toBe(1024);
    pool.filled(first, 1024);
    const second = pool.take(reader);
    expect(second.byteLength).toBe(1024);
    pool.release(first.subarray(0, 1024));
    pool.filled(second, 1000);
    // Its chunks come back: large buffers, up to `maxOut` of them out at once.
    const large = [pool.take(reader)];
    expect(large[0]!.byteLength).toBe(4096);
    pool.filled(large[0]!, 4000);
    large.push(pool.take(reader));
    expect(large[1]!.byteLength).toBe(4096);
    pool.filled(large[1]!, 4000);
    expect(pool.take(reader).byteLength).toBe(1024);
    // One back: large again, and the one back is read into again.
    pool.release(large[0]!.subarray(0, 4000));
    expect(pool.take(reader)).toBe(large[0]);
    // Another reader whose chunks nobody released gets small ones.
    expect(pool.take(pool.reader()).byteLength).toBe(1024);
    expect(pool.take().byteLength).toBe(1024);
  });

  it('keeps a reader whose large buffers are never given back to small ones', () => {
    const pool = new ReadBuffers(1024, 4, 256, { size: 4096, keep: 4, maxOut: 3 });
    const reader = pool.reader();
    const first = pool.take(reader);
    pool.filled(first, 1024);
    pool.release(first.subarray(0, 1024));
    const sizes: number[] = [];
    for (let read = 0; read < 6; read++) {
      const buffer = pool.take(reader);
      sizes.push(buffer.byteLength);
      pool.filled(buffer, buffer.byteLength);
    }
    expect(sizes).toEqual([4096, 4096, 4096, 1024, 1024, 1024]);
  });

  it('keeps at most `keep` idle buffers', () => {
    const pool = new ReadBuffers(64, 1);
    const buffers = [pool.take(), pool.take()];
    for (const buffer of buffers) {
      pool.filled(buffer, 64);
      pool.release(buffer.subarray(0, 64));
    }
    const again = [pool.take(), pool.take()];
    expect(again.filter((buffer) => buffers.includes(buffer))).toHaveLength(1);
  });

  /** An arena over ordinary memory (its region starts 4 KiB into a buffer): views at offsets other than 0. */
  function arenaOf(bytes: number, granule: number): HugePageArena {
    const system: HugePageSystem = { address: () => 0x7f00_0000_0000 + 4096, adviseHugePages: () => true };
    return new HugePageArena(bytes, granule, () => system);
  }

  it("takes a reader's new buffers from its arena, and back once all read into them was released", () => {
    const arena = arenaOf(hugePageBytes, 1024);
    const pool = new ReadBuffers(1024, 4, 256, { size: 4096, keep: 4, maxOut: 2 }, arena);
    const reader = pool.reader();
    const first = pool.take(reader);
    const second = pool.take(reader);
    // Neighbours in the arena (one ArrayBuffer), each a buffer of its own.
    expect(arena.slotOf(first)).toBe(0);
    expect(arena.slotOf(second)).toBe(1);
    expect(first.byteOffset).toBeGreaterThan(0);
    pool.filled(first, 1024);
    pool.filled(second, 800);
    pool.release(first.subarray(0, 1024));
    // A view of the first buffer's bytes is no part of the second one.
    pool.release(first.subarray(0, 800));
    const large = pool.take(reader);
    expect(large.byteLength).toBe(4096);
    expect(arena.slotOf(large)).toBe(4);
    pool.filled(large, 3000);
    const rest = pool.take(reader);
    expect(rest.buffer).toBe(large.buffer);
    expect(rest.byteOffset).toBe(large.byteOffset + 3000);
    pool.filled(rest, 1000);
    pool.release(large.subarray(0, 3000));
    pool.release(large.subarray(3000, 4000));
    // Back, and read into again; the second one is not (200 bytes... none of it was released).
    expect(pool.take(reader)).toBe(large);
    expect(pool.take()).toBe(first);
    expect(pool.take()).not.toBe(second);
    // Without a reader: ordinary memory.
    expect(arena.slotOf(pool.take())).toBe(-1);
  });

  it("releases a read's head with the first body chunk after it, never a byte twice", () => {
    const pool = new ReadBuffers(1024, 4, 256);
    const buffer = pool.take();
    pool.filled(buffer, 300);
    const second = pool.take();
    pool.filled(second, 500);
    // The first read is a body's last bytes; the second a response's head (100 bytes) and its first body bytes.
    pool.release(buffer.subarray(0, 300));
    const body = buffer.subarray(400, 800);
    pool.releaseReadStart(body);
    pool.releaseReadStart(body);
    expect(pool.take()).not.toBe(buffer);
    pool.release(body);
    expect(pool.take()).toBe(buffer);

    const other = pool.take();
    pool.filled(other, 800);
    // A body chunk released first, then a "head" that would cover it: ignored, the buffer stays out.
    pool.release(other.subarray(100, 300));
    pool.releaseReadStart(other.subarray(300, 800));
    pool.release(other.subarray(300, 800));
    expect(pool.take()).not.toBe(other);
    pool.release(other.subarray(0, 100));
    expect(pool.take()).toBe(other);
  });
});
