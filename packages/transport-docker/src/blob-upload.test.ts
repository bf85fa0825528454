import { describe, expect, it } from 'vitest';
import {
  ChunkReader,
  defaultUploadChunkBytes,
  isStreamedUploadRefusal,
  maxUploadChunkBytes,
  parseChunkMinLength,
  UploadedPieces,
  uploadChunkSize,
  uploadedBytesFromRange,
} from './blob-upload.js';

/** Pieces of the given sizes whose bytes count 0, 1, 2… (mod 256) across pieces. */
function numberedPieces(sizes: number[], first = 0): Uint8Array[] {
  let value = first;
  return sizes.map((size) => {
    const piece = Buffer.alloc(size);
    for (let index = 0; index < size; index++) piece[index] = value++ & 0xff;
    return piece;
  });
}

function readerOf(prefix: Uint8Array[], rest: Uint8Array[]): { reader: ChunkReader; pulls: () => number } {
  let pulls = 0;
  const iterator = rest[Symbol.iterator]();
  const reader = new ChunkReader(prefix, async () => {
    pulls++;
    const next = iterator.next();
    return next.done ? { done: true, value: undefined } : { done: false, value: next.value };
  });
  return { reader, pulls: () => pulls };
}

async function readAll(reader: ChunkReader, size: number): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for (;;) {
    const chunk = await reader.read(size);
    if (chunk === undefined) return chunks;
    chunks.push(chunk);
  }
}

describe('ChunkReader', () => {
  it('cuts pieces into chunks of the size asked, the last smaller, every byte in order', async () => {
    const { reader } = readerOf([], numberedPieces([3, 10, 1, 1, 7, 20]));
    const chunks = await readAll(reader, 8);
    expect(chunks.map((chunk) => chunk.byteLength)).toEqual([8, 8, 8, 8, 8, 2]);
    expect([...Buffer.concat(chunks)]).toEqual(Array.from({ length: 42 }, (_, index) => index));
  });

  it('reads the prefix first, then the stream, and pulls only what a chunk needs', async () => {
    const [first, second, third] = numberedPieces([5, 5, 5]);
    const { reader, pulls } = readerOf([first!, second!], [third!]);
    const chunk = await reader.read(6);
    expect(chunk?.byteLength).toBe(6);
    expect(pulls()).toBe(0);
    const rest = await readAll(reader, 6);
    expect(rest.map((piece) => piece.byteLength)).toEqual([6, 3]);
    expect([...Buffer.concat([chunk!, ...rest])]).toEqual(Array.from({ length: 15 }, (_, index) => index));
    expect(pulls()).toBe(2);
  });

  it('yields nothing for an empty stream and skips empty pieces', async () => {
    expect(await readAll(readerOf([], []).reader, 4)).toEqual([]);
    const chunks = await readAll(
      readerOf([Buffer.alloc(0)], [Buffer.alloc(0), Buffer.from('abc')]).reader,
      2,
    );
    expect(chunks.map((chunk) => Buffer.from(chunk).toString())).toEqual(['ab', 'c']);
  });

  it('passes an error of the stream on', async () => {
    const reader = new ChunkReader([Buffer.from('ab')], () =>
      Promise.reject(new Error('verification failed')),
    );
    await expect(reader.read(4)).rejects.toThrow('verification failed');
  });
});

describe('upload protocol helpers', () => {
  it('parses OCI-Chunk-Min-Length', () => {
    expect(parseChunkMinLength('5242880')).toBe(5242880);
    expect(parseChunkMinLength(' 42 ')).toBe(42);
    for (const bad of [undefined, '', '0', '-1', '1.5', 'ten', '99999999999999999999'])
      expect(parseChunkMinLength(bad)).toBeUndefined();
  });

  it('chooses chunks: forced size raised to the minimum, else max(minimum, 8 MiB) when needed, else streaming', () => {
    expect(uploadChunkSize({ forced: undefined, registryMinimum: undefined, streamingRefused: false })).toBe(
      undefined,
    );
    expect(uploadChunkSize({ forced: 1000, registryMinimum: undefined, streamingRefused: false })).toBe(1000);
    expect(uploadChunkSize({ forced: 1000, registryMinimum: 4096, streamingRefused: false })).toBe(4096);
    expect(uploadChunkSize({ forced: undefined, registryMinimum: 4096, streamingRefused: false })).toBe(
      defaultUploadChunkBytes,
    );
    expect(uploadChunkSize({ forced: undefined, registryMinimum: 20_000_000, streamingRefused: false })).toBe(
      20_000_000,
    );
    expect(uploadChunkSize({ forced: undefined, registryMinimum: undefined, streamingRefused: true })).toBe(
      defaultUploadChunkBytes,
    );
    expect(uploadChunkSize({ forced: undefined, registryMinimum: 2 ** 40, streamingRefused: false })).toBe(
      maxUploadChunkBytes,
    );
  });

  it('reads how many bytes a session holds from its Range header', () => {
    expect(uploadedBytesFromRange('0-1023')).toBe(1024);
    expect(uploadedBytesFromRange('bytes=0-99')).toBe(100);
    expect(uploadedBytesFromRange('0-0')).toBe(0);
    for (const bad of [undefined, '', '5-10', 'bytes 0-1', '0-x'])
      expect(uploadedBytesFromRange(bad)).toBeUndefined();
  });

  it('tells refusals of a streamed PATCH from other failures', () => {
    for (const status of [400, 411, 413, 415, 416, 501]) expect(isStreamedUploadRefusal(status)).toBe(true);
    for (const status of [202, 401, 403, 404, 405, 429, 500, 503])
      expect(isStreamedUploadRefusal(status)).toBe(false);
  });
});

describe('UploadedPieces', () => {
  it('hands back, in order, the pieces that end at or before the offset, each once; own pieces only counted', () => {
    const handedBack: Uint8Array[] = [];
    const pieces = new UploadedPieces((chunk) => handedBack.push(chunk));
    const a = Buffer.alloc(10);
    const joined = Buffer.alloc(5);
    const b = Buffer.alloc(20);
    pieces.taken(a);
    pieces.taken(joined, false);
    pieces.taken(b);
    expect(pieces.takenBytes).toBe(35);
    pieces.releaseBefore(9);
    expect(handedBack).toEqual([]);
    pieces.releaseBefore(15);
    expect(handedBack).toHaveLength(1);
    expect(handedBack[0]).toBe(a);
    pieces.releaseBefore(34);
    expect(handedBack).toHaveLength(1);
    pieces.releaseBefore(Number.POSITIVE_INFINITY);
    pieces.releaseBefore(Number.POSITIVE_INFINITY);
    expect(handedBack).toHaveLength(2);
    expect(handedBack[1]).toBe(b);
    expect(pieces.held).toBe(0);
  });

  it('keeps nothing without a release function', () => {
    const pieces = new UploadedPieces(undefined);
    pieces.taken(Buffer.alloc(10));
    expect(pieces.takenBytes).toBe(10);
    expect(pieces.held).toBe(0);
  });
});
