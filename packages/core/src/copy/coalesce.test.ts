import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { coalesceChunks } from './coalesce.js';
import { createDecompressor, throughTransform } from './compression.js';

async function* chunksOf(bytes: Buffer, length: number): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < bytes.byteLength; offset += length) {
    yield bytes.subarray(offset, Math.min(offset + length, bytes.byteLength));
  }
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of source) chunks.push(chunk);
  return chunks;
}

describe('coalesceChunks', () => {
  it('gathers short chunks into chunks of at least the minimum, the bytes unchanged', async () => {
    const bytes = randomBytes(10_000);
    const chunks = await collect(coalesceChunks(chunksOf(bytes, 300), 1024));
    expect(chunks.map((chunk) => chunk.byteLength)).toEqual([
      1200, 1200, 1200, 1200, 1200, 1200, 1200, 1200, 400,
    ]);
    expect(Buffer.concat(chunks).equals(bytes)).toBe(true);
  });

  it('passes chunks already long enough as they are (no copy)', async () => {
    const long = randomBytes(4096);
    const short = randomBytes(100);
    async function* source(): AsyncGenerator<Uint8Array> {
      yield long;
      yield short;
      yield short;
    }
    const chunks = await collect(coalesceChunks(source(), 1024));
    expect(chunks[0]).toBe(long);
    expect(chunks.map((chunk) => chunk.byteLength)).toEqual([4096, 200]);
  });

  it('gives a lone short last chunk as it is, and nothing for an empty source', async () => {
    const short = randomBytes(10);
    async function* one(): AsyncGenerator<Uint8Array> {
      yield short;
    }
    const chunks = await collect(coalesceChunks(one(), 1024));
    expect(chunks).toHaveLength(1);
    expect(chunks[0]).toBe(short);
    expect(await collect(coalesceChunks(chunksOf(Buffer.alloc(0), 1), 1024))).toEqual([]);
  });

  it('passes a failure of the source on', async () => {
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield randomBytes(10);
      throw new Error('connection reset');
    }
    await expect(collect(coalesceChunks(failing(), 1024))).rejects.toThrow('connection reset');
  });

  it('feeds a decompressor the same bytes as the network chunks would', async () => {
    const plain = Buffer.concat([randomBytes(3 * 1024 * 1024), Buffer.alloc(2 * 1024 * 1024, 7)]);
    const gzip = gzipSync(plain);
    const inflated = await collect(
      throughTransform(coalesceChunks(chunksOf(gzip, 65_536), 1024 * 1024), createDecompressor('gzip')),
    );
    expect(Buffer.concat(inflated).equals(plain)).toBe(true);
  });
});
