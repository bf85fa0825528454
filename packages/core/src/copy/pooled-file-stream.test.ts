import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReadBuffers } from './buffer-pool.js';
import { pooledFileStream } from './pooled-file-stream.js';

describe('pooledFileStream', () => {
  let directory: string;
  let file: string;
  let bytes: Buffer;

  beforeAll(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-pooled-'));
    file = path.join(directory, 'blob');
    bytes = randomBytes(3 * 64 * 1024 + 12345);
    await writeFile(file, bytes);
  });

  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  async function readAll(
    stream: AsyncIterable<Uint8Array>,
    onChunk: (chunk: Uint8Array) => void = () => {},
  ): Promise<Buffer> {
    const copies: Buffer[] = [];
    for await (const chunk of stream) {
      copies.push(Buffer.from(chunk));
      onChunk(chunk);
    }
    return Buffer.concat(copies);
  }

  it('streams the whole file in chunks of the pool’s buffers, and closes the handle', async () => {
    const buffers = new ReadBuffers(64 * 1024, 8);
    const handle = await open(file, 'r');
    const sizes: number[] = [];
    const read = await readAll(pooledFileStream(handle, { buffers }), (chunk) =>
      sizes.push(chunk.byteLength),
    );
    expect(read.equals(bytes)).toBe(true);
    expect(sizes).toEqual([65536, 65536, 65536, 12345]);
    await expect(handle.stat()).rejects.toMatchObject({ code: 'EBADF' });
  });

  it('reads released chunks’ memory again: no new buffer per chunk', async () => {
    const buffers = new ReadBuffers(64 * 1024, 8);
    const memory = new Set<ArrayBufferLike>();
    const read = await readAll(pooledFileStream(await open(file, 'r'), { buffers }), (chunk) => {
      memory.add(chunk.buffer);
      buffers.release(chunk);
    });
    expect(read.equals(bytes)).toBe(true);
    // One read ahead of the consumer at most: two buffers take turns.
    expect(memory.size).toBeLessThanOrEqual(2);
  });

  it('gives fresh memory when nobody releases the chunks', async () => {
    const buffers = new ReadBuffers(64 * 1024, 8);
    const memory = new Set<ArrayBufferLike>();
    await readAll(pooledFileStream(await open(file, 'r'), { buffers }), (chunk) => memory.add(chunk.buffer));
    expect(memory.size).toBe(4);
  });

  it('reads `length` bytes from `start`', async () => {
    const buffers = new ReadBuffers(64 * 1024, 8);
    const read = await readAll(
      pooledFileStream(await open(file, 'r'), { buffers, start: 1000, length: 70_000 }),
    );
    expect(read.equals(bytes.subarray(1000, 71_000))).toBe(true);
  });

  it('ends at once on an empty file', async () => {
    const empty = path.join(directory, 'empty');
    await writeFile(empty, '');
    expect((await readAll(pooledFileStream(await open(empty, 'r')))).byteLength).toBe(0);
  });

  it('destroyed mid-way, gives back the read under way and closes the handle', async () => {
    const buffers = new ReadBuffers(64 * 1024, 8);
    const handle = await open(file, 'r');
    const stream = pooledFileStream(handle, { buffers });
    const first = (await stream[Symbol.asyncIterator]().next()).value as Uint8Array;
    expect(Buffer.from(first).equals(bytes.subarray(0, 65536))).toBe(true);
    buffers.release(first);
    stream.destroy();
    await new Promise((resolve) => stream.once('close', resolve));
    await expect(handle.stat()).rejects.toMatchObject({ code: 'EBADF' });
    // Every buffer came back: the next takes reuse them, no new memory.
    const again = buffers.take();
    expect(again.buffer === first.buffer || buffers.take().buffer === first.buffer).toBe(true);
  });

  it('fails with the read error', async () => {
    const handle = await open(directory, 'r');
    await expect(readAll(pooledFileStream(handle))).rejects.toMatchObject({ code: 'EISDIR' });
  });
});
