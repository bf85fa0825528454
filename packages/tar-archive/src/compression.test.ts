import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { ErrorCodes, hasErrorCode } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createArchiveDecompressor, detectArchiveCompression } from './compression.js';
import { openTarArchive, openTarArchiveFromStream } from './reader.js';
import { buildRawTar } from './test-support.js';

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-compression-'));
});
afterEach(() => rm(directory, { recursive: true, force: true }));

const tools = { gzip: 'gz', bzip2: 'bz2', xz: 'xz', zstd: 'zst' } as const;

/** A tar with two files, and the same compressed by each tool (the real gzip, bzip2, xz, zstd). */
async function compressedTars(): Promise<Record<keyof typeof tools, string>> {
  const tar = path.join(directory, 'plain.tar');
  await writeFile(
    tar,
    buildRawTar([
      { name: 'a.txt', data: 'first file\n' },
      { name: 'dir/b.txt', data: Buffer.alloc(100_000, 'b') },
    ]),
  );
  const result = {} as Record<keyof typeof tools, string>;
  for (const [tool, extension] of Object.entries(tools) as [keyof typeof tools, string][]) {
    const output = path.join(directory, `plain.tar.${extension}`);
    await writeFile(output, execFileSync(tool, ['-c', tar]));
    result[tool] = output;
  }
  return result;
}

describe('compressed tar archives', () => {
  it('are recognised by their magic numbers', async () => {
    const files = await compressedTars();
    for (const [tool, file] of Object.entries(files)) {
      expect(detectArchiveCompression(await readFile(file))).toBe(tool);
    }
    expect(detectArchiveCompression(await readFile(path.join(directory, 'plain.tar')))).toBe('none');
    expect(detectArchiveCompression(new Uint8Array())).toBe('none');
  });

  it.each(Object.keys(tools))(
    '%s: are opened from a file and from a stream, entries readable',
    async (tool) => {
      const file = (await compressedTars())[tool as keyof typeof tools];
      for (const open of [
        () => openTarArchive(file),
        () => openTarArchiveFromStream(createReadStream(file), { description: file }),
      ]) {
        const reader = await open();
        try {
          expect(reader.path).not.toBe(file); // decompressed into a spool file
          expect(await text(reader.openEntry('a.txt').stream)).toBe('first file\n');
          expect((await text(reader.openEntry('dir/b.txt').stream)).length).toBe(100_000);
        } finally {
          await reader.close();
        }
      }
    },
  );

  it.each(Object.keys(tools))(
    '%s: truncated or corrupt data fails with ERR_GANTRY_INVALID_LAYOUT naming the archive',
    async (tool) => {
      const file = (await compressedTars())[tool as keyof typeof tools];
      const bytes = await readFile(file);
      const truncated = path.join(directory, `truncated.tar.${tools[tool as keyof typeof tools]}`);
      await writeFile(truncated, bytes.subarray(0, bytes.length - 20));
      const error = await openTarArchive(truncated).catch((caught: unknown) => caught);
      expect(hasErrorCode(error, ErrorCodes.InvalidLayout), String(error)).toBe(true);
      expect((error as Error).message).toContain(`archive ${truncated}: corrupt or truncated ${tool} data: `);

      const corrupt = Buffer.from(bytes);
      for (let offset = 16; offset < corrupt.length - 16; offset += 7)
        corrupt[offset] = (corrupt[offset] ?? 0) ^ 0x5a;
      const decompressor = createArchiveDecompressor(tool as keyof typeof tools, 'layer x');
      const failure = await text(Readable.from([corrupt]).pipe(decompressor)).catch(
        (caught: unknown) => caught,
      );
      expect(hasErrorCode(failure, ErrorCodes.InvalidLayout), String(failure)).toBe(true);
      expect((failure as Error).message).toContain(`layer x: corrupt or truncated ${tool} data: `);
    },
  );
});
