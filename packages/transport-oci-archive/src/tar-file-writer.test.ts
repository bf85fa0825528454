import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { ErrorCodes, hasErrorCode } from '@gantry/core';
import { openTarArchive } from '@gantry/tar-archive';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeUstarHeader, splitUstarName, TarFileWriter } from './tar-file-writer.js';
import { runTool, temporaryDirectory } from './test-support/tools.js';

let directory = '';
let remove: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ directory, remove } = await temporaryDirectory());
});
afterEach(() => remove());

async function withWriter(file: string, use: (writer: TarFileWriter) => Promise<void>): Promise<void> {
  const handle = await open(file, 'wx+');
  try {
    await use(new TarFileWriter(handle, new Date('2024-01-02T03:04:05Z')));
  } finally {
    await handle.close();
  }
}

describe('TarFileWriter', () => {
  it('writes entries GNU tar and @gantry/tar-archive read, with headers written after the data', async () => {
    const file = path.join(directory, 'a.tar');
    const longName = `blobs/sha512/${'ab'.repeat(64)}`;
    await withWriter(file, async (writer) => {
      await writer.addDirectory('blobs/');
      await writer.addFile('small.txt', Buffer.from('hello\n'));
      const late = await writer.addFileFromStream(
        Readable.from([Buffer.from('named '), Buffer.from('afterwards\n')]),
        {
          expectedSize: -1,
        },
      );
      await late.finish('late.txt');
      const long = await writer.addFileFromStream(Readable.from([Buffer.from('long name\n')]), {
        name: longName,
        expectedSize: 10,
      });
      await long.finish();
      await writer.finish();
    });
    expect((await runTool('tar', ['-tf', file])).trim().split('\n')).toEqual([
      'blobs/',
      'small.txt',
      'late.txt',
      longName,
    ]);
    expect(await runTool('tar', ['-xOf', file, 'late.txt'])).toBe('named afterwards\n');
    expect(await runTool('tar', ['-xOf', file, longName])).toBe('long name\n');
    expect(await runTool('tar', ['-tvf', file, 'small.txt'])).toMatch(
      /^-rw-r--r-- root\/root\s+6 2024-01-02/,
    );
    const reader = await openTarArchive(file);
    try {
      expect(reader.entries.map((entry) => entry.name)).toEqual(['blobs', 'small.txt', 'late.txt', longName]);
      expect((await reader.readEntryBytes(longName)).toString()).toBe('long name\n');
    } finally {
      await reader.close();
    }
  });

  it('takes back an entry whose stream fails or has the wrong size', async () => {
    const file = path.join(directory, 'b.tar');
    await withWriter(file, async (writer) => {
      await writer.addFile('first.txt', Buffer.from('first\n'));
      const size = writer.position;
      async function* failing() {
        yield Buffer.alloc(1000, 1);
        throw new Error('read failure');
      }
      await expect(
        writer.addFileFromStream(failing(), { name: 'broken', expectedSize: 2000 }),
      ).rejects.toThrow('read failure');
      expect(writer.position).toBe(size);
      let failure: unknown;
      try {
        await writer.addFileFromStream(Readable.from([Buffer.alloc(10)]), {
          name: 'short',
          expectedSize: 11,
        });
      } catch (error) {
        failure = error;
      }
      expect(hasErrorCode(failure, ErrorCodes.SizeMismatch)).toBe(true);
      expect(writer.position).toBe(size);
      await writer.addFile('second.txt', Buffer.from('second\n'));
      await writer.finish();
    });
    expect((await runTool('tar', ['-tf', file])).trim().split('\n')).toEqual(['first.txt', 'second.txt']);
    expect((await readFile(file)).byteLength).toBe(4 * 512 + 1024);
  });

  it('encodes sizes of 8 GiB and more in base-256, which GNU tar reads', async () => {
    const size = 8 * 1024 ** 3 + 5;
    const header = encodeUstarHeader({ name: 'huge.bin', size, type: 'file', mtime: 0 });
    expect(header[124]).toBe(0x80);
    let decoded = 0n;
    for (let position = 125; position < 136; position++)
      decoded = (decoded << 8n) | BigInt(header[position]!);
    expect(Number(decoded)).toBe(size);
    // A sparse archive file: the header, 8 GiB of holes as data, padding, end blocks.
    const file = path.join(directory, 'huge.tar');
    const handle = await open(file, 'wx+');
    try {
      await handle.write(header, 0, 512, 0);
      const dataEnd = 512 + size + ((512 - (size % 512)) % 512);
      await handle.truncate(dataEnd + 1024);
    } finally {
      await handle.close();
    }
    expect(await runTool('tar', ['-tvf', file])).toMatch(/ 8589934597 .* huge\.bin/);
    const reader = await openTarArchive(file);
    try {
      expect(reader.get('huge.bin')?.size).toBe(size);
    } finally {
      await reader.close();
    }
  });

  it('splits long names into ustar prefix and name when it can', () => {
    expect(splitUstarName('short')).toEqual({ prefix: '', name: 'short' });
    const hex = 'c'.repeat(96);
    expect(splitUstarName(`blobs/sha384/${hex}`)).toEqual({ prefix: 'blobs/sha384', name: hex });
    expect(splitUstarName(`blobs/sha512/${'d'.repeat(128)}`)).toBeUndefined();
  });
});
