import { describe, expect, it } from 'vitest';
import { gatherChunks } from './image-destination.js';

async function collect(source: AsyncIterable<Uint8Array>): Promise<number[]> {
  const sizes: number[] = [];
  for await (const chunk of source) sizes.push(chunk.byteLength);
  return sizes;
}

async function* pieces(sizes: number[]): AsyncGenerator<Uint8Array> {
  let value = 0;
  for (const size of sizes) {
    const chunk = Buffer.alloc(size);
    for (let index = 0; index < size; index++) chunk[index] = value++ & 0xff;
    yield chunk;
  }
}

describe('gatherChunks', () => {
  it('joins small pieces into pieces of at least the size asked, keeping every byte in order', async () => {
    expect(await collect(gatherChunks(pieces([3, 3, 3, 3, 3]), 8))).toEqual([9, 6]);
    const joined = Buffer.concat(
      await (async () => {
        const chunks: Uint8Array[] = [];
        for await (const chunk of gatherChunks(pieces([5, 1, 7, 2, 9, 4]), 6)) chunks.push(chunk);
        return chunks;
      })(),
    );
    expect([...joined]).toEqual(Array.from({ length: 28 }, (_, index) => index));
  });

  it('passes large pieces through as they are and yields nothing for an empty source', async () => {
    expect(await collect(gatherChunks(pieces([10, 2, 12]), 8))).toEqual([10, 14]);
    expect(await collect(gatherChunks(pieces([]), 8))).toEqual([]);
  });

  it('tells which chunks it copied into a gathered piece, and which pieces it made', async () => {
    const source: Uint8Array[] = [];
    async function* recorded(): AsyncGenerator<Uint8Array> {
      for await (const chunk of pieces([10, 2, 3, 12, 4])) {
        source.push(chunk);
        yield chunk;
      }
    }
    const copied: Uint8Array[] = [];
    const gathered: Uint8Array[] = [];
    const out: Uint8Array[] = [];
    for await (const piece of gatherChunks(recorded(), 8, {
      copied: (chunk) => copied.push(chunk),
      gathered: (piece) => gathered.push(piece),
    })) {
      out.push(piece);
    }
    expect(out.map((piece) => piece.byteLength)).toEqual([10, 17, 4]);
    // The 10 passed as it is; 2, 3 and 12 were copied into the 17; the last piece (4) passed alone.
    expect(out[0]).toBe(source[0]);
    expect(copied).toEqual([source[1], source[2], source[3]]);
    expect(gathered).toEqual([out[1]]);
    expect(out[2]).toBe(source[4]);
  });

  it('lets an error of the source through', async () => {
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield Buffer.alloc(2);
      throw new Error('verification failed');
    }
    await expect(collect(gatherChunks(failing(), 8))).rejects.toThrow('verification failed');
  });
});
