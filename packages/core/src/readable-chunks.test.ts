import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { readableChunks } from './readable-chunks.js';

function chunksOfSize(count: number, size: number): Buffer[] {
  return Array.from({ length: count }, (_, index) => Buffer.alloc(size, index));
}

describe('readableChunks', () => {
  it('yields the very chunks the stream emitted, never joined, even when many are buffered', async () => {
    const chunks = chunksOfSize(32, 1024);
    const stream = new PassThrough({ highWaterMark: 1024 * 1024 });
    for (const chunk of chunks) stream.write(chunk);
    stream.end();
    // Everything is buffered before the first read: a Readable's own iterator would join it all.
    const seen: Uint8Array[] = [];
    for await (const chunk of readableChunks(stream)) seen.push(chunk);
    expect(seen).toHaveLength(chunks.length);
    seen.forEach((chunk, index) => {
      expect(chunk).toBe(chunks[index]);
    });
  });

  it('pauses the stream while the consumer is behind, and resumes it', async () => {
    const stream = new PassThrough();
    const iterator = readableChunks(stream, 32)[Symbol.asyncIterator]();
    const first = iterator.next();
    for (const chunk of chunksOfSize(6, 16)) stream.write(chunk);
    stream.end();
    await first;
    // 32 bytes (two chunks) queued for a consumer that has not asked for them: the stream waits.
    expect(stream.isPaused()).toBe(true);
    let count = 1;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) count += 1;
    expect(count).toBe(6);
  });

  it('reads a stream that was paused before', async () => {
    const stream = new PassThrough();
    stream.pause();
    stream.end(Buffer.from('abc'));
    const seen: Uint8Array[] = [];
    for await (const chunk of readableChunks(stream)) seen.push(chunk);
    expect(Buffer.concat(seen).toString()).toBe('abc');
  });

  it("rejects with the stream's error", async () => {
    const stream = new PassThrough();
    const failure = new Error('connection reset');
    const reading = (async () => {
      for await (const _chunk of readableChunks(stream)) stream.destroy(failure);
    })();
    stream.write(Buffer.from('x'));
    await expect(reading).rejects.toBe(failure);
  });

  it('rejects when the stream closes before its end', async () => {
    const stream = new PassThrough();
    const reading = (async () => {
      for await (const _chunk of readableChunks(stream)) stream.destroy();
    })();
    stream.write(Buffer.from('x'));
    await expect(reading).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
  });

  it('destroys the stream when the consumer stops early', async () => {
    const stream = Readable.from(chunksOfSize(8, 16), { objectMode: false });
    for await (const _chunk of readableChunks(stream)) break;
    expect(stream.destroyed).toBe(true);
  });

  it('ends at once for a stream that already ended', async () => {
    const stream = new PassThrough();
    stream.end();
    for await (const _chunk of stream) {
      // drained
    }
    expect(stream.readableEnded).toBe(true);
    const seen: Uint8Array[] = [];
    for await (const chunk of readableChunks(stream)) seen.push(chunk);
    expect(seen).toEqual([]);
  });
});
