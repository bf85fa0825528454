import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { handBackWrittenChunks } from './written-chunks.js';

describe('handBackWrittenChunks', () => {
  let directory: string;
  beforeEach(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-written-chunks-'));
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('hands every chunk back once, after its bytes are in the file, whether written alone or in a writev', async () => {
    const chunks = Array.from({ length: 40 }, (_, index) => Buffer.alloc(64 * 1024, index + 1));
    const file = path.join(directory, 'blob');
    // A small queue: some chunks go alone (_write), the ones queued meanwhile together (_writev).
    const output = createWriteStream(file, { highWaterMark: 256 * 1024 });
    const handedBack: Uint8Array[] = [];
    const sizesWhenHandedBack: number[] = [];
    handBackWrittenChunks(output, (chunk) => {
      handedBack.push(chunk);
      sizesWhenHandedBack.push(output.bytesWritten);
    });
    await pipeline(Readable.from(chunks, { objectMode: false }), output);
    expect(handedBack).toHaveLength(chunks.length);
    expect(new Set(handedBack).size).toBe(chunks.length);
    for (const chunk of chunks) expect(handedBack).toContain(chunk);
    // Each chunk was handed back only once the file had at least the bytes up to its end.
    handedBack.forEach((chunk, order) => {
      const end = (chunks.findIndex((written) => written === chunk) + 1) * 64 * 1024;
      expect(sizesWhenHandedBack[order]).toBeGreaterThanOrEqual(end);
    });
    expect((await readFile(file)).equals(Buffer.concat(chunks))).toBe(true);
  });

  it('hands back a chunk whose write failed, and the stream still fails', async () => {
    const output = createWriteStream(path.join(directory, 'missing', 'blob'));
    const handedBack: Uint8Array[] = [];
    handBackWrittenChunks(output, (chunk) => handedBack.push(chunk));
    const chunk = Buffer.alloc(10);
    await expect(pipeline(Readable.from([chunk], { objectMode: false }), output)).rejects.toMatchObject({
      code: 'ENOENT',
    });
    // The open failed before any write: nothing was handed to the file, nothing is handed back.
    expect(handedBack).toEqual([]);
  });
});
