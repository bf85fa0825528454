import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { digestOf } from '../digest.js';
import { ErrorCodes } from '../errors.js';
import { bufferPoolOf } from './buffer-pool.js';
import {
  compressingStage,
  createCompressor,
  createDecompressor,
  detectCompression,
  diffIdStage,
  peekCompression,
  throughTransform,
  zstdAvailable,
  zstdDecompressionImplementation,
  zstdImplementation,
} from './compression.js';
import { isLentView, lentViewBuffersOf, releaseCompressedChunk } from './lent-output-buffers.js';
import { libzstd } from './libzstd.js';

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of source) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

function chunked(bytes: Uint8Array, size: number): AsyncIterable<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length; offset += size)
    parts.push(bytes.subarray(offset, offset + size));
  return Readable.from(parts, { objectMode: true });
}

describe('detectCompression', () => {
  it('recognises gzip and zstd magic numbers', () => {
    expect(detectCompression(gzipSync(Buffer.from('x')))).toBe('gzip');
    expect(detectCompression(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0]))).toBe('zstd');
    expect(detectCompression(Buffer.from('plain tar'))).toBe('none');
    expect(detectCompression(new Uint8Array([]))).toBe('none');
  });
});

describe('peekCompression', () => {
  it('detects across tiny chunks and replays every byte', async () => {
    const gzipped = gzipSync(Buffer.from('hello world'.repeat(50)));
    const { compression, stream } = await peekCompression(chunked(gzipped, 1));
    expect(compression).toBe('gzip');
    expect((await collect(stream)).equals(gzipped)).toBe(true);
  });

  it('handles empty input', async () => {
    const { compression, stream } = await peekCompression(chunked(new Uint8Array(), 1));
    expect(compression).toBe('none');
    expect((await collect(stream)).length).toBe(0);
  });
});

describe('throughTransform', () => {
  it('round-trips through gzip and gunzip with the requested level', async () => {
    const input = Buffer.from('layer content '.repeat(10_000));
    const compressed = await collect(throughTransform(chunked(input, 1000), createCompressor('gzip', 9)));
    expect(detectCompression(compressed)).toBe('gzip');
    expect(gunzipSync(compressed).equals(input)).toBe(true);
    const back = await collect(throughTransform(chunked(compressed, 333), createDecompressor('gzip')));
    expect(back.equals(input)).toBe(true);
  });

  it('propagates corrupt input as an error', async () => {
    const corrupt = Buffer.concat([gzipSync(Buffer.from('abc')).subarray(0, 10), Buffer.from('garbage!!')]);
    await expect(
      collect(throughTransform(chunked(corrupt, 4), createDecompressor('gzip'))),
    ).rejects.toThrow();
  });
});

describe('throughTransform, chunk by chunk', () => {
  /** A transform pushing each input chunk out as `pieces` separate chunks (as a decompressor does). */
  function splitting(pieces: number, seen: Uint8Array[]): Transform {
    return new Transform({
      transform(chunk: Buffer, _encoding, done) {
        const size = Math.ceil(chunk.byteLength / pieces);
        for (let offset = 0; offset < chunk.byteLength; offset += size) {
          const piece = chunk.subarray(offset, offset + size);
          seen.push(piece);
          this.push(piece);
        }
        done();
      },
    });
  }

  it('yields the very chunks the transform pushed, never joined into new buffers', async () => {
    const pushed: Uint8Array[] = [];
    const input = Buffer.alloc(64 * 1024, 7);
    const received: Uint8Array[] = [];
    for await (const chunk of throughTransform(chunked(input, 16 * 1024), splitting(4, pushed))) {
      received.push(chunk);
      // A slow consumer: the transform runs ahead and its chunks queue up meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect(received).toHaveLength(16);
    received.forEach((chunk, index) => {
      expect(chunk).toBe(pushed[index]);
    });
  });

  it('stops pulling the source while the consumer is behind (backpressure)', async () => {
    let pulled = 0;
    async function* endless(): AsyncGenerator<Uint8Array> {
      for (;;) {
        pulled += 1;
        yield Buffer.alloc(64 * 1024);
      }
    }
    const iterator = throughTransform(endless(), splitting(2, []))[Symbol.asyncIterator]();
    await iterator.next();
    await new Promise((resolve) => setTimeout(resolve, 100));
    // A few chunks in the stream buffers, never the endless source.
    expect(pulled).toBeLessThan(40);
    await iterator.return?.();
  });

  it('rejects with the error of the source or of the transform, and destroys the transform when the consumer stops', async () => {
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('abc');
      throw new Error('source broke');
    }
    await expect(collect(throughTransform(failing(), splitting(1, [])))).rejects.toThrow('source broke');
    const broken = new Transform({
      transform(_chunk, _encoding, done) {
        done(new Error('transform broke'));
      },
    });
    await expect(collect(throughTransform(chunked(Buffer.alloc(10), 5), broken))).rejects.toThrow(
      'transform broke',
    );
    const transform = splitting(1, []);
    for await (const _chunk of throughTransform(chunked(Buffer.alloc(1000), 10), transform)) break;
    expect(transform.destroyed).toBe(true);
  });
});

/** Runs a compression tool installed from Debian (xz, bzip2, zstd) on `input`. */
function compressWithTool(tool: string, args: string[], input: Uint8Array): Buffer {
  const result = spawnSync(tool, args, { input, maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`${tool} failed: ${result.stderr?.toString()}`);
  return result.stdout;
}

const layerLike = Buffer.concat([
  Buffer.from('layer content '.repeat(20_000)),
  createHash('sha512').update('random-ish').digest(),
  Buffer.from(Array.from({ length: 200_000 }, (_, index) => (index * 7919) % 251)),
]);

describe('zstd', () => {
  it('has an implementation on this Node.js (node:zlib from 22.15, else zstd-napi)', () => {
    const hasNodeZstd = typeof (zlib as Record<string, unknown>).createZstdCompress === 'function';
    expect(zstdImplementation()).toBe(hasNodeZstd ? 'node:zlib' : 'zstd-napi');
    expect(zstdAvailable()).toBe(true);
  });

  for (const implementation of ['zstd-napi', 'node:zlib'] as const) {
    describe(implementation, () => {
      const saved = process.env.GANTRY_ZSTD_IMPLEMENTATION;
      beforeEach(() => {
        process.env.GANTRY_ZSTD_IMPLEMENTATION = implementation;
      });
      afterEach(() => {
        if (saved === undefined) delete process.env.GANTRY_ZSTD_IMPLEMENTATION;
        else process.env.GANTRY_ZSTD_IMPLEMENTATION = saved;
      });
      const available =
        implementation === 'zstd-napi' ||
        typeof (zlib as Record<string, unknown>).createZstdCompress === 'function';

      // Which test applies depends on the runtime (node:zlib has zstd from Node.js 22.15): each run
      // defines the one that applies, so nothing is reported as skipped.
      if (available)
        it('compresses what the zstd tool decompresses, and reads what it writes', async () => {
          expect(zstdImplementation()).toBe(implementation);
          const compressed = await collect(compressingStage('zstd', 5)(chunked(layerLike, 7000)));
          expect(detectCompression(compressed)).toBe('zstd');
          expect(compressWithTool('zstd', ['-d', '-c'], compressed).equals(layerLike)).toBe(true);
          const fromTool = compressWithTool('zstd', ['-c', '-19'], layerLike);
          const back = await collect(throughTransform(chunked(fromTool, 999), createDecompressor('zstd')));
          expect(back.equals(layerLike)).toBe(true);
        });
      else
        it('is refused with ERR_GANTRY_NOT_SUPPORTED naming the Node.js version', () => {
          expect(() => createCompressor('zstd')).toThrow(
            expect.objectContaining({ code: ErrorCodes.NotSupported }),
          );
          expect(() => createDecompressor('zstd')).toThrow(process.version);
        });
    });
  }

  it('decompresses every frame of a multi-frame layer, skippable frames included (zstd:chunked)', async () => {
    const skippable = Buffer.alloc(12);
    skippable.writeUInt32LE(0x184d2a50, 0);
    skippable.writeUInt32LE(4, 4);
    const first = layerLike.subarray(0, 100_000);
    const second = layerLike.subarray(100_000);
    const frames = Buffer.concat([
      compressWithTool('zstd', ['-c'], first),
      skippable,
      compressWithTool('zstd', ['-c'], second),
    ]);
    const back = await collect(throughTransform(chunked(frames, 4096), createDecompressor('zstd')));
    expect(back.equals(layerLike)).toBe(true);
  });

  // node:zlib's zstd decompressor (used only without zstd-napi) has chunks of its own size.
  it.runIf(zstdDecompressionImplementation() === 'zstd-napi')(
    'hands out zstd output in chunks of the requested size (the last one shorter), across frames',
    async () => {
      const skippable = Buffer.alloc(12);
      skippable.writeUInt32LE(0x184d2a50, 0);
      skippable.writeUInt32LE(4, 4);
      const frames = Buffer.concat([
        compressWithTool('zstd', ['-c'], layerLike.subarray(0, 70_001)),
        skippable,
        compressWithTool('zstd', ['-c'], layerLike.subarray(70_001)),
      ]);
      const chunkSize = 32 * 1024;
      for (const inputChunkSize of [1000, 4096, frames.length]) {
        const chunks: Uint8Array[] = [];
        for await (const chunk of throughTransform(
          chunked(frames, inputChunkSize),
          createDecompressor('zstd', chunkSize),
        )) {
          chunks.push(Buffer.from(chunk));
        }
        expect(Buffer.concat(chunks).equals(layerLike)).toBe(true);
        expect(chunks.slice(0, -1).every((chunk) => chunk.byteLength === chunkSize)).toBe(true);
        expect(chunks.at(-1)!.byteLength).toBe(layerLike.byteLength % chunkSize || chunkSize);
      }
    },
  );

  it.runIf(zstdDecompressionImplementation() === 'zstd-napi')(
    'takes full zstd output chunks from the buffer pool of their size when asked (pooledOutput)',
    async () => {
      const frames = compressWithTool('zstd', ['-c'], layerLike);
      const chunkSize = 16 * 1024 + 7; // A size no other test uses: this pool is this test's.
      const pool = bufferPoolOf(chunkSize);
      const pooledChunks: Uint8Array[] = [];
      const copies: Buffer[] = [];
      for await (const chunk of throughTransform(
        chunked(frames, 4096),
        createDecompressor('zstd', chunkSize, { pooledOutput: true }),
      )) {
        copies.push(Buffer.from(chunk));
        if (pool.wholeBufferOf(chunk)) pooledChunks.push(chunk);
      }
      expect(Buffer.concat(copies).equals(layerLike)).toBe(true);
      // Every full chunk is a pool buffer; the shorter last one is a view (never given back).
      expect(pooledChunks.length).toBe(Math.floor(layerLike.byteLength / chunkSize));
      expect(new Set(pooledChunks.map((chunk) => chunk.buffer)).size).toBe(pooledChunks.length);
      for await (const chunk of throughTransform(
        chunked(frames, 4096),
        createDecompressor('zstd', chunkSize),
      )) {
        expect(pool.wholeBufferOf(chunk)).toBeUndefined();
      }
    },
  );

  it('rejects zstd data that ends inside a frame', async () => {
    const compressed = compressWithTool('zstd', ['-c'], layerLike);
    await expect(
      collect(
        throughTransform(
          chunked(compressed.subarray(0, compressed.length - 10), 4096),
          createDecompressor('zstd'),
        ),
      ),
    ).rejects.toThrow();
  });

  it('rejects corrupt zstd data', async () => {
    const compressed = compressWithTool('zstd', ['-c'], layerLike);
    compressed.writeUInt8(compressed.readUInt8(compressed.length >> 1) ^ 0xff, compressed.length >> 1);
    compressed.writeUInt8(
      compressed.readUInt8((compressed.length >> 1) + 1) ^ 0xff,
      (compressed.length >> 1) + 1,
    );
    await expect(
      collect(throughTransform(chunked(compressed, 4096), createDecompressor('zstd'))),
    ).rejects.toThrow();
  });
});

describe('zstd decoded by libzstd off this thread (pooledOutput)', () => {
  const skippable = Buffer.alloc(12);
  skippable.writeUInt32LE(0x184d2a50, 0);
  skippable.writeUInt32LE(4, 4);
  const frames = Buffer.concat([
    compressWithTool('zstd', ['-c'], layerLike.subarray(0, 70_001)),
    skippable,
    compressWithTool('zstd', ['-c', '-19'], layerLike.subarray(70_001)),
  ]);
  const chunkSize = 24 * 1024 + 3; // A size no other test uses: this pool is this test's.

  it('decodes every frame, skippable ones included, into full pooled chunks (the last one shorter)', async () => {
    expect(libzstd()).not.toBeNull();
    const pool = bufferPoolOf(chunkSize);
    for (const inputChunkSize of [999, 4096, frames.length]) {
      const decompressor = createDecompressor('zstd', chunkSize, { pooledOutput: true });
      expect(decompressor.constructor.name).toBe('LibzstdDecompressor');
      const copies: Buffer[] = [];
      let pooled = 0;
      for await (const chunk of throughTransform(chunked(frames, inputChunkSize), decompressor)) {
        copies.push(Buffer.from(chunk));
        if (pool.wholeBufferOf(chunk)) {
          pooled += 1;
          pool.give(pool.wholeBufferOf(chunk)!);
        }
      }
      expect(Buffer.concat(copies).equals(layerLike)).toBe(true);
      expect(copies.slice(0, -1).every((chunk) => chunk.byteLength === chunkSize)).toBe(true);
      expect(copies.at(-1)!.byteLength).toBe(layerLike.byteLength % chunkSize || chunkSize);
      expect(pooled).toBe(Math.floor(layerLike.byteLength / chunkSize));
    }
  });

  it('hands each input chunk to `inputDone` once it is decoded to its end, and not when failing', async () => {
    for (const format of ['zstd', 'gzip'] as const) {
      const compressed = format === 'zstd' ? frames : gzipSync(layerLike);
      const done: Uint8Array[] = [];
      let decodedWhenLastDone = -1;
      let decoded = 0;
      const input: Uint8Array[] = [];
      for (let offset = 0; offset < compressed.length; offset += 64)
        input.push(compressed.subarray(offset, offset + 64));
      expect(input.length).toBeGreaterThan(2);
      const decompressor = createDecompressor(format, chunkSize, {
        pooledOutput: true,
        inputDone: (chunk) => {
          done.push(chunk);
          decodedWhenLastDone = decoded;
        },
      });
      const copies: Buffer[] = [];
      for await (const chunk of throughTransform(Readable.from(input, { objectMode: true }), decompressor)) {
        copies.push(Buffer.from(chunk));
        decoded += chunk.byteLength;
      }
      expect(Buffer.concat(copies).equals(layerLike)).toBe(true);
      // The very chunks written, each once, in order.
      expect(done).toHaveLength(input.length);
      done.forEach((chunk, index) => {
        expect(chunk.buffer).toBe(input[index]!.buffer);
        expect(chunk.byteOffset).toBe(input[index]!.byteOffset);
      });
      expect(decodedWhenLastDone).toBeGreaterThan(0);
    }
    const corrupt = Buffer.from(frames);
    for (let offset = 20; offset < 40; offset += 1) corrupt[offset] = 0xff - corrupt[offset]!;
    const done: Uint8Array[] = [];
    await expect(
      collect(
        throughTransform(
          Readable.from([corrupt], { objectMode: true }),
          createDecompressor('zstd', chunkSize, {
            pooledOutput: true,
            inputDone: (chunk) => done.push(chunk),
          }),
        ),
      ),
    ).rejects.toMatchObject({ code: 'Z_DATA_ERROR' });
    expect(done).toEqual([]);
  });

  it('rejects data that ends inside a frame, and corrupt data, as corrupt', async () => {
    const truncated = frames.subarray(0, frames.length - 10);
    await expect(
      collect(
        throughTransform(
          chunked(truncated, 4096),
          createDecompressor('zstd', chunkSize, { pooledOutput: true }),
        ),
      ),
    ).rejects.toMatchObject({
      code: 'Z_DATA_ERROR',
      message: expect.stringContaining('ends inside a frame'),
    });
    const corrupt = Buffer.from(frames);
    for (let offset = 20; offset < 40; offset += 1) corrupt[offset] = 0xff - corrupt[offset]!;
    await expect(
      collect(
        throughTransform(
          chunked(corrupt, 4096),
          createDecompressor('zstd', chunkSize, { pooledOutput: true }),
        ),
      ),
    ).rejects.toMatchObject({ code: 'Z_DATA_ERROR' });
  });

  it('gives its context up when the reader stops early, even with a call running, reset for reuse', async () => {
    const decompressor = createDecompressor('zstd', 1024, { pooledOutput: true });
    for await (const _chunk of throughTransform(chunked(frames, 4096), decompressor)) break;
    expect(decompressor.destroyed).toBe(true);
    // Its context, given up mid-frame, is reset before the next stream takes it again.
    for (let round = 0; round < 3; round += 1) {
      const again = createDecompressor('zstd', chunkSize, { pooledOutput: true });
      expect((await collect(throughTransform(chunked(frames, 4096), again))).equals(layerLike)).toBe(true);
    }
    const context = libzstd()!.decompressionContext();
    const output = Buffer.alloc(1024);
    const running = context.decompress(output, frames);
    context.free();
    await expect(running).resolves.toEqual([expect.any(Number), 1024, expect.any(Number)]);
    await expect(context.decompress(output, frames)).rejects.toThrow('freed');
  });
});

describe('gzip output lent view by view (lentOutput)', () => {
  const chunkSize = 16 * 1024 + 5; // A size no other test uses: this pool is this test's.
  const plain = Buffer.alloc(5 * chunkSize + 321);
  for (let index = 0; index < plain.length; index += 1) plain[index] = (index * 7 + (index >> 9)) & 0xff;
  const gzipped = gzipSync(plain);

  /** Every chunk read (kept, not released), or the error that ended the stream. */
  async function decompress(
    input: Buffer,
    lentOutput: boolean,
    inputChunkSize = 1000,
  ): Promise<{ chunks: Uint8Array[]; failure?: unknown }> {
    const chunks: Uint8Array[] = [];
    try {
      for await (const chunk of throughTransform(
        chunked(input, inputChunkSize),
        createDecompressor('gzip', chunkSize, { lentOutput }),
      )) {
        chunks.push(chunk);
      }
      return { chunks };
    } catch (failure) {
      return { chunks, failure };
    }
  }

  it('writes its output into lent buffers, never into one whose views are not all released', async () => {
    const { chunks, failure } = await decompress(gzipped, true);
    expect(failure).toBeUndefined();
    // Nothing was released: had a buffer been written into again, earlier chunks would have changed.
    expect(Buffer.concat(chunks).equals(plain)).toBe(true);
    expect(chunks.every((chunk) => isLentView(chunk))).toBe(true);
    const buffers = new Set(chunks.map((chunk) => chunk.buffer));
    expect(buffers.size).toBe(6);
    const pool = lentViewBuffersOf(chunkSize);
    const idleBefore = pool.idle;
    for (const chunk of chunks) releaseCompressedChunk(chunk);
    // Each buffer came back once all its views were released (the last one too, the stream ended).
    expect(pool.idle).toBe(idleBefore + 6);
    // The next stream writes into the same memory.
    const again = await decompress(gzipped, true, gzipped.length);
    expect(Buffer.concat(again.chunks).equals(plain)).toBe(true);
    expect(again.chunks.every((chunk) => buffers.has(chunk.buffer))).toBe(true);
    for (const chunk of again.chunks) releaseCompressedChunk(chunk);
  });

  it('gives the same bytes and the same errors as without: several members, trailing bytes, truncated, corrupt', async () => {
    const corrupt = Buffer.from(gzipped);
    for (let offset = 40; offset < 60; offset += 1) corrupt[offset] = 0xff - corrupt[offset]!;
    const cases: Record<string, Buffer> = {
      'one member': gzipped,
      'several members': Buffer.concat([
        gzipSync(plain.subarray(0, 40_000)),
        gzipSync(plain.subarray(40_000)),
      ]),
      'trailing zeros': Buffer.concat([gzipped, Buffer.alloc(700)]),
      'trailing garbage': Buffer.concat([gzipped, Buffer.from('not gzip at all')]),
      truncated: gzipped.subarray(0, gzipped.length - 2000),
      'truncated trailer': gzipped.subarray(0, gzipped.length - 3),
      corrupt,
      'wrong CRC': Buffer.concat([gzipped.subarray(0, -8), Buffer.alloc(4, 0x55), gzipped.subarray(-4)]),
    };
    for (const [name, input] of Object.entries(cases)) {
      const fresh = await decompress(input, false);
      const lent = await decompress(input, true);
      expect(Buffer.concat(lent.chunks).equals(Buffer.concat(fresh.chunks)), name).toBe(true);
      if (fresh.failure === undefined) expect(lent.failure, name).toBeUndefined();
      else {
        expect(lent.failure, name).toBeInstanceOf(Error);
        expect((lent.failure as Error).message, name).toBe((fresh.failure as Error).message);
        expect((lent.failure as { code?: string }).code, name).toBe(
          (fresh.failure as { code?: string }).code,
        );
      }
      for (const chunk of lent.chunks) releaseCompressedChunk(chunk);
    }
    const several = await decompress(cases['several members']!, true);
    expect(Buffer.concat(several.chunks).equals(plain)).toBe(true);
    expect((await decompress(cases.truncated!, true)).failure).toMatchObject({ code: 'Z_BUF_ERROR' });
    expect((await decompress(cases.corrupt!, true)).failure).toMatchObject({ code: 'Z_DATA_ERROR' });
  });
});

describe('xz and bzip2 (read only)', () => {
  it('recognises their magic numbers', () => {
    expect(detectCompression(compressWithTool('xz', ['-c'], Buffer.from('x')))).toBe('xz');
    expect(detectCompression(compressWithTool('bzip2', ['-c'], Buffer.from('x')))).toBe('bzip2');
  });

  for (const [format, tool] of [
    ['xz', 'xz'],
    ['bzip2', 'bzip2'],
  ] as const) {
    it(`decompresses what the ${tool} tool writes, streaming`, async () => {
      const compressed = compressWithTool(tool, ['-c'], layerLike);
      const back = await collect(throughTransform(chunked(compressed, 5000), createDecompressor(format)));
      expect(back.equals(layerLike)).toBe(true);
    });

    it(`rejects corrupt ${format} data`, async () => {
      const compressed = compressWithTool(tool, ['-c'], layerLike);
      compressed.fill(0x55, compressed.length >> 1, (compressed.length >> 1) + 64);
      await expect(
        collect(throughTransform(chunked(compressed, 5000), createDecompressor(format))),
      ).rejects.toThrow();
    });
  }

  it('computes the DiffID of an xz layer', async () => {
    const compressed = compressWithTool('xz', ['-c'], layerLike);
    let diffId: string | undefined;
    await pipeline(
      chunked(compressed, 4096),
      diffIdStage((value) => {
        diffId = value;
      }),
      async (source: AsyncIterable<Uint8Array>) => {
        for await (const _chunk of source) {
          // drain
        }
      },
    );
    expect(diffId).toBe(digestOf(layerLike));
  });
});

describe('diffIdStage', () => {
  it('passes bytes through unchanged and reports the uncompressed digest of gzip input', async () => {
    const tar = Buffer.from('pretend tar '.repeat(5000));
    const gzipped = gzipSync(tar);
    let diffId: string | undefined;
    const output: Buffer[] = [];
    await pipeline(
      chunked(gzipped, 500),
      diffIdStage((value) => {
        diffId = value;
      }),
      async (source: AsyncIterable<Uint8Array>) => {
        for await (const chunk of source) output.push(Buffer.from(chunk));
      },
    );
    expect(Buffer.concat(output).equals(gzipped)).toBe(true);
    expect(diffId).toBe(digestOf(tar));
  });

  it('reports the digest of uncompressed input itself', async () => {
    const tar = Buffer.from('plain tar bytes');
    let diffId: string | undefined;
    await pipeline(
      chunked(tar, 3),
      diffIdStage((value) => {
        diffId = value;
      }),
      async (source: AsyncIterable<Uint8Array>) => {
        for await (const _chunk of source) {
          // drain
        }
      },
    );
    expect(diffId).toBe(digestOf(tar));
  });
});
