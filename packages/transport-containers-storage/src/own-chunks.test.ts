import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ownChunks } from './own-chunks.js';

/** A byte stream with `chunks` already buffered (pushed before anyone reads). */
function buffered(chunks: Buffer[]): Readable {
  const stream = new Readable({ read() {}, highWaterMark: 1 << 20 });
  for (const chunk of chunks) stream.push(chunk);
  stream.push(null);
  return stream;
}

describe('ownChunks', () => {
  it('yields the very chunks pushed, where the stream’s own iterator joins buffered ones', async () => {
    const chunks = [Buffer.from('one'), Buffer.from('two'), Buffer.from('three')];
    const joined: Uint8Array[] = [];
    for await (const chunk of buffered(chunks)) joined.push(chunk);
    expect(joined).toHaveLength(1);

    const own: Uint8Array[] = [];
    for await (const chunk of ownChunks(buffered(chunks))) own.push(chunk);
    expect(own).toHaveLength(3);
    own.forEach((chunk, index) => {
      expect(chunk.buffer).toBe(chunks[index]!.buffer);
      expect(chunk.byteOffset).toBe(chunks[index]!.byteOffset);
      expect(Buffer.from(chunk).equals(chunks[index]!)).toBe(true);
    });
  });

  it('pauses the stream while the queue is full and reads everything in order', async () => {
    const total = 64;
    let produced = 0;
    const stream = new Readable({
      highWaterMark: 16,
      read() {
        this.push(produced < total ? Buffer.alloc(8, produced++) : null);
      },
    });
    const seen: number[] = [];
    for await (const chunk of ownChunks(stream, 32)) {
      seen.push(chunk[0]!);
      // The consumer is slower than the stream: never more than the limit (and what the stream holds) ahead.
      expect(produced - seen.length).toBeLessThanOrEqual(32 / 8 + 16 / 8 + 2);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(seen).toEqual(Array.from({ length: total }, (_, index) => index));
  });

  it('throws the stream’s error, and a premature close', async () => {
    const failing = new Readable({ read() {} });
    failing.push(Buffer.from('x'));
    setImmediate(() => failing.destroy(Object.assign(new Error('digest mismatch'), { code: 'X' })));
    await expect(
      (async () => {
        for await (const _ of ownChunks(failing)) {
          // read
        }
      })(),
    ).rejects.toThrow('digest mismatch');

    const closed = new Readable({ read() {} });
    setImmediate(() => closed.destroy());
    await expect(
      (async () => {
        for await (const _ of ownChunks(closed)) {
          // read
        }
      })(),
    ).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
  });

  it('destroys the stream when the consumer stops early', async () => {
    const stream = new Readable({ read() {} });
    stream.push(Buffer.from('a'));
    stream.push(Buffer.from('b'));
    for await (const _ of ownChunks(stream)) break;
    expect(stream.destroyed).toBe(true);
  });
});
