import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { createLoadRequestBody } from './load-body.js';

/** Writes `chunks` through a load body of `pieceSize`; returns the pieces it passed on. */
async function piecesOf(chunks: Buffer[], pieceSize: number): Promise<Buffer[]> {
  const pieces: Buffer[] = [];
  await pipeline(Readable.from(chunks), createLoadRequestBody(pieceSize), async (source) => {
    for await (const piece of source as AsyncIterable<Buffer>) pieces.push(piece);
  });
  return pieces;
}

describe('createLoadRequestBody', () => {
  it('passes every byte on in order, joined into pieces of at least the piece size (the last may be shorter)', async () => {
    const chunks = [512, 65_536, 3, 65_536, 512, 100_000, 7, 65_536, 1].map((size) => randomBytes(size));
    const pieces = await piecesOf(chunks, 128 * 1024);
    expect(Buffer.concat(pieces).equals(Buffer.concat(chunks))).toBe(true);
    for (const piece of pieces.slice(0, -1)) expect(piece.byteLength).toBeGreaterThanOrEqual(128 * 1024);
    expect(pieces.length).toBeLessThan(chunks.length);
    // Pieces end where the bytes held reach 128 KiB; the last byte comes with the end.
    expect(pieces.map((piece) => piece.byteLength)).toEqual([131_587, 166_055, 1]);
  });

  it('passes a chunk of the piece size on as it is when nothing is held back', async () => {
    const chunk = randomBytes(1024);
    const pieces = await piecesOf([chunk], 1024);
    expect(pieces).toHaveLength(1);
    expect(pieces[0]).toBe(chunk);
  });

  it('ends with nothing when nothing was written, and skips empty chunks', async () => {
    expect(await piecesOf([], 1024)).toEqual([]);
    const pieces = await piecesOf([Buffer.alloc(0), Buffer.from('abc'), Buffer.alloc(0)], 1024);
    expect(Buffer.concat(pieces).toString()).toBe('abc');
  });

  it('fails its reader when destroyed with an error (an aborted archive fails the request)', async () => {
    const body = createLoadRequestBody(1024);
    body.write(Buffer.from('partial'));
    const reading = (async () => {
      for await (const _piece of body) {
        // discard
      }
    })();
    body.destroy(new Error('archive aborted'));
    await expect(reading).rejects.toThrow('archive aborted');
  });

  it('refuses a piece size that is not a positive integer', () => {
    expect(() => createLoadRequestBody(0)).toThrow(RangeError);
    expect(() => createLoadRequestBody(1.5)).toThrow(RangeError);
  });
});
