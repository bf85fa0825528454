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

  it('lets an error of the source through', async () => {
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield Buffer.alloc(2);
      throw new Error('verification failed');
    }
    await expect(collect(gatherChunks(failing(), 8))).rejects.toThrow('verification failed');
  });
});
