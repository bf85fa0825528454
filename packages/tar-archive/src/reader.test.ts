import { execFileSync, spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { link, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { compressorInputBuffers, ErrorCodes, hasErrorCode } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultMetadataSizeLimit, openTarArchive, openTarArchiveFromStream } from './reader.js';
import { buildRawTar, paxHeaderEntry } from './test-support.js';

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

function gnuTar(...args: string[]): void {
  execFileSync('tar', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

async function expectInvalidLayout(operation: Promise<unknown>, pattern: RegExp): Promise<void> {
  const error = await operation.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error, 'expected a rejection').toBeDefined();
  expect(hasErrorCode(error, ErrorCodes.InvalidLayout), String(error)).toBe(true);
  expect((error as Error).message).toMatch(pattern);
}

async function makeTree(): Promise<Record<string, string>> {
  const tree = path.join(directory, 'tree');
  const longDirectory = `${'d'.repeat(90)}/${'e'.repeat(90)}/${'f'.repeat(90)}`;
  const longFile = `${longDirectory}/${'n'.repeat(120)}.txt`;
  await mkdir(path.join(tree, longDirectory), { recursive: true });
  await mkdir(path.join(tree, 'sub'), { recursive: true });
  const files: Record<string, string> = {
    'manifest.json': '{"hello":"world"}',
    'sub/data.bin': 'x'.repeat(70_000),
    [longFile]: 'long name content',
    'sub/empty': '',
  };
  for (const [name, content] of Object.entries(files)) await writeFile(path.join(tree, name), content);
  await symlink('data.bin', path.join(tree, 'sub/link-to-data'));
  await symlink('../manifest.json', path.join(tree, 'sub/link-to-manifest'));
  await link(path.join(tree, 'sub/data.bin'), path.join(tree, 'hardlink-to-data'));
  return files;
}

describe('openTarArchive on archives written by GNU tar', () => {
  for (const format of ['gnu', 'pax', 'ustar-with-pax-fallback'] as const) {
    it(`indexes and reads a ${format} archive with long names, symlinks and hard links`, async () => {
      const files = await makeTree();
      const archive = path.join(directory, 'archive.tar');
      const tarFormat = format === 'ustar-with-pax-fallback' ? 'posix' : format;
      gnuTar('--format', tarFormat, '-cf', archive, '-C', path.join(directory, 'tree'), '.');
      const reader = await openTarArchive(archive);
      try {
        for (const [name, content] of Object.entries(files)) {
          const entry = reader.resolveFile(name);
          expect(entry?.type, name).toBe('file');
          expect(entry?.size).toBe(Buffer.byteLength(content));
          const { stream, size } = reader.openEntry(name);
          expect(size).toBe(Buffer.byteLength(content));
          expect(await text(stream)).toBe(content);
        }
        expect(reader.get('./sub/')?.type).toBe('directory');
        expect(reader.get('.')?.type).toBe('directory');
        expect(reader.get('sub/link-to-data')).toMatchObject({ type: 'symlink', linkTarget: 'sub/data.bin' });
        expect(await text(reader.openEntry('sub/link-to-data').stream)).toBe(files['sub/data.bin']);
        expect(await text(reader.openEntry('sub/link-to-manifest').stream)).toBe(files['manifest.json']);
        // GNU tar stores the second name of a hard-linked file as a hard link to the first.
        const names = [reader.get('hardlink-to-data')!, reader.get('sub/data.bin')!];
        expect(names.map((entry) => entry.type).sort()).toEqual(['file', 'hardlink']);
        expect(await text(reader.openEntry('hardlink-to-data').stream)).toBe(files['sub/data.bin']);
        expect((await reader.readEntryBytes('manifest.json')).toString()).toBe(files['manifest.json']);
        expect((await reader.readEntryPrefix('sub/link-to-manifest', 5)).toString()).toBe('{"hel');
        expect((await reader.readEntryPrefix('sub/empty', 5)).length).toBe(0);
        expect(reader.get('missing')).toBeUndefined();
        await expect(reader.readEntryBytes('missing')).rejects.toMatchObject({
          code: ErrorCodes.BlobNotFound,
        });
      } finally {
        await reader.close();
      }
    });
  }

  it('indexes many small entries, long names and PAX headers across read-ahead windows', async () => {
    const tree = path.join(directory, 'many');
    await mkdir(tree);
    const expected = new Map<string, string>();
    for (let index = 0; index < 400; index++) {
      // Sizes 0 to ~3 KiB, names up to ~230 bytes (PAX / GNU long-name headers): headers fall at every
      // offset relative to the reader's windows.
      const name = index % 7 === 0 ? `${'x'.repeat(110 + index / 7)}-${index}` : `file-${index}`;
      const content = `${index}:`.repeat((index * 37) % 800);
      await writeFile(path.join(tree, name), content);
      expected.set(name, content);
    }
    for (const format of ['posix', 'gnu']) {
      const archivePath = path.join(directory, `many-${format}.tar`);
      gnuTar(`--format=${format}`, '-cf', archivePath, '-C', tree, '.');
      const archive = await openTarArchive(archivePath);
      try {
        const files = archive.entries.filter((entry) => entry.type === 'file');
        expect(files).toHaveLength(expected.size);
        for (const [name, content] of expected) {
          expect(await text(archive.openEntry(name).stream)).toBe(content);
        }
      } finally {
        await archive.close();
      }
    }
  });

  it('reads entries concurrently from their offsets', async () => {
    const files = await makeTree();
    const archive = path.join(directory, 'archive.tar');
    gnuTar('-cf', archive, '-C', path.join(directory, 'tree'), '.');
    const reader = await openTarArchive(archive);
    const names = Object.keys(files);
    const contents = await Promise.all(names.map((name) => text(reader.openEntry(name).stream)));
    expect(contents).toEqual(names.map((name) => files[name]));
    await reader.close();
  });

  it('keeps PAX global headers and records for later entries', async () => {
    const bytes = buildRawTar([
      paxHeaderEntry({ comment: 'global' }, 'g'),
      paxHeaderEntry({ path: `a/${'p'.repeat(300)}`, size: '5' }),
      { name: 'short-name', data: 'hello' },
      { name: 'b', data: 'world' },
    ]);
    const archive = path.join(directory, 'pax.tar');
    await writeFile(archive, bytes);
    const reader = await openTarArchive(archive);
    expect(reader.entries.map((entry) => entry.name)).toEqual([`a/${'p'.repeat(300)}`, 'b']);
    expect(await text(reader.openEntry(`a/${'p'.repeat(300)}`).stream)).toBe('hello');
    expect(await text(reader.openEntry('b').stream)).toBe('world');
    expect(reader.entries[0]!.headerOffset).toBe(512 * 2);
    await reader.close();
  });

  it('reads GNU base-256 sizes', async () => {
    const archive = path.join(directory, 'base256.tar');
    await writeFile(archive, buildRawTar([{ name: 'file', data: 'abc', base256Size: true }]));
    const reader = await openTarArchive(archive);
    expect(reader.get('file')?.size).toBe(3);
    expect(await text(reader.openEntry('file').stream)).toBe('abc');
    await reader.close();
  });

  it('accepts an archive without end-of-archive blocks when its last entry is complete', async () => {
    const archive = path.join(directory, 'no-end.tar');
    await writeFile(archive, buildRawTar([{ name: 'file', data: 'abc' }], { endBlocks: false }));
    const reader = await openTarArchive(archive);
    expect(reader.entries.map((entry) => entry.name)).toEqual(['file']);
    await reader.close();
  });
});

describe('hostile archives', () => {
  const cases: Array<{ title: string; bytes: () => Buffer; message: RegExp }> = [
    {
      title: 'an entry with a .. component',
      bytes: () => buildRawTar([{ name: 'a/../../etc/passwd', data: 'x' }]),
      message: /"a\/\.\.\/\.\.\/etc\/passwd".*"\.\." component/,
    },
    {
      title: 'an absolute entry name',
      bytes: () => buildRawTar([{ name: '/etc/passwd', data: 'x' }]),
      message: /"\/etc\/passwd": absolute path/,
    },
    {
      title: 'a .. name given by a PAX header',
      bytes: () => buildRawTar([paxHeaderEntry({ path: '../escape' }), { name: 'innocent', data: 'x' }]),
      message: /"\.\.\/escape"/,
    },
    {
      title: 'a symbolic link pointing outside the archive',
      bytes: () => buildRawTar([{ name: 'dir/link', typeflag: '2', linkName: '../../outside' }]),
      message: /"dir\/link".*points outside the archive/,
    },
    {
      title: 'a symbolic link to an absolute path',
      bytes: () => buildRawTar([{ name: 'link', typeflag: '2', linkName: '/etc/shadow' }]),
      message: /"link": symbolic link to an absolute path/,
    },
    {
      title: 'a hard link pointing outside the archive',
      bytes: () => buildRawTar([{ name: 'link', typeflag: '1', linkName: '../x' }]),
      message: /"link": hard link "\.\.\/x" points outside the archive/,
    },
    {
      title: 'a hard link to an entry that does not precede it',
      bytes: () =>
        buildRawTar([
          { name: 'link', typeflag: '1', linkName: 'later' },
          { name: 'later', data: 'x' },
        ]),
      message: /"link".*not an earlier entry/,
    },
    {
      title: 'duplicate entries',
      bytes: () =>
        buildRawTar([
          { name: 'manifest.json', data: '[]' },
          { name: './manifest.json', data: '[{}]' },
        ]),
      message: /"\.\/manifest\.json".*duplicate entry/,
    },
    {
      title: 'a truncated header',
      bytes: () => buildRawTar([{ name: 'file', data: 'abc' }]).subarray(0, 1024 + 100),
      message: /truncated tar archive/,
    },
    {
      title: 'truncated data',
      bytes: () => buildRawTar([{ name: 'big', data: 'abc', size: 10_000 }], { endBlocks: false }),
      message: /truncated tar archive.*"big" has 10000 bytes/,
    },
    {
      title: 'a bad header checksum',
      bytes: () => buildRawTar([{ name: 'file', data: 'abc', badChecksum: true }]),
      message: /checksum mismatch/,
    },
    {
      title: 'a sparse file',
      bytes: () => buildRawTar([{ name: 'sparse', typeflag: 'S', data: '' }]),
      message: /"sparse".*sparse files are not supported/,
    },
  ];
  for (const { title, bytes, message } of cases) {
    it(`refuses ${title}`, async () => {
      const archive = path.join(directory, 'hostile.tar');
      await writeFile(archive, bytes());
      await expectInvalidLayout(openTarArchive(archive), message);
    });
  }

  it('refuses to read a metadata entry larger than the limit', async () => {
    const archive = path.join(directory, 'big.tar');
    await writeFile(archive, buildRawTar([{ name: 'manifest.json', data: Buffer.alloc(2048, 0x20) }]));
    const reader = await openTarArchive(archive);
    await expectInvalidLayout(
      reader.readEntryBytes('manifest.json', { maxSize: 1024 }),
      /"manifest\.json".*2048 bytes/,
    );
    expect((await reader.readEntryBytes('manifest.json')).length).toBe(2048);
    expect(defaultMetadataSizeLimit).toBe(16 * 1024 * 1024);
    await reader.close();
  });

  it('refuses a manifest.json over the default 16 MiB limit', async () => {
    const archive = path.join(directory, 'huge.tar');
    const size = defaultMetadataSizeLimit + 1;
    await writeFile(archive, buildRawTar([{ name: 'manifest.json', data: Buffer.alloc(size, 0x20) }]));
    const reader = await openTarArchive(archive);
    await expectInvalidLayout(reader.readEntryBytes('manifest.json'), /more than the 16777216-byte limit/);
    await reader.close();
  });

  it('refuses symbolic link loops when resolving', async () => {
    const archive = path.join(directory, 'loop.tar');
    await writeFile(
      archive,
      buildRawTar([
        { name: 'a', typeflag: '2', linkName: 'b' },
        { name: 'b', typeflag: '2', linkName: 'a' },
      ]),
    );
    const reader = await openTarArchive(archive);
    expect(() => reader.openEntry('a')).toThrow(/too many levels of links/);
    await reader.close();
  });
});

describe('non-seekable input', () => {
  it('spools a stream to a temporary file, indexes it, and removes the spool file on close', async () => {
    const spoolDirectory = path.join(directory, 'spool');
    await mkdir(spoolDirectory);
    const bytes = buildRawTar([
      { name: 'one', data: 'first' },
      { name: 'two', data: 'second' },
    ]);
    const reader = await openTarArchiveFromStream(Readable.from([bytes]), {
      temporaryDirectory: spoolDirectory,
    });
    expect(await readdir(spoolDirectory)).toHaveLength(1);
    expect(await text(reader.openEntry('two').stream)).toBe('second');
    expect(await text(reader.openEntry('one').stream)).toBe('first');
    await reader.close();
    expect(await readdir(spoolDirectory)).toEqual([]);
  });

  it('reads a FIFO path by spooling it', async () => {
    const fifo = path.join(directory, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const source = path.join(directory, 'source.tar');
    await writeFile(source, buildRawTar([{ name: 'file', data: 'through a pipe' }]));
    const writer = spawn('sh', ['-c', `cat "${source}" > "${fifo}"`]);
    const writerClosed = new Promise((resolve) => writer.on('close', resolve));
    const reader = await openTarArchive(fifo, { temporaryDirectory: directory });
    expect(await text(reader.openEntry('file').stream)).toBe('through a pipe');
    expect(reader.path).not.toBe(fifo);
    await reader.close();
    expect(await writerClosed).toBe(0);
  });

  it('removes the spool file when the spooled archive is hostile', async () => {
    const spoolDirectory = path.join(directory, 'spool');
    await mkdir(spoolDirectory);
    await expectInvalidLayout(
      openTarArchiveFromStream(createReadStream('/dev/null'), { temporaryDirectory: spoolDirectory }).then(
        async (reader) => {
          await reader.close();
          return openTarArchiveFromStream(Readable.from([buildRawTar([{ name: '/abs', data: '' }])]), {
            temporaryDirectory: spoolDirectory,
          });
        },
      ),
      /absolute path/,
    );
    expect(await readdir(spoolDirectory)).toEqual([]);
  });
});

describe('aborting', () => {
  it('errors an entry stream with ERR_GANTRY_ABORTED when the signal fires', async () => {
    const archive = path.join(directory, 'big.tar');
    await writeFile(archive, buildRawTar([{ name: 'big', data: Buffer.alloc(4 * 1024 * 1024) }]));
    const reader = await openTarArchive(archive);
    const controller = new AbortController();
    const { stream } = reader.openEntry('big', { signal: controller.signal });
    const consumed = (async () => {
      for await (const _chunk of stream) controller.abort();
    })();
    await expect(consumed).rejects.toMatchObject({ code: ErrorCodes.Aborted });
    await reader.close();
  });
});

describe('entry streams', () => {
  it('keep the archive readable after one is destroyed half-way', async () => {
    const files = await makeTree();
    const archive = path.join(directory, 'archive.tar');
    gnuTar('-cf', archive, '-C', path.join(directory, 'tree'), '.');
    const reader = await openTarArchive(archive);
    // A consumer that stops early (the copy pipeline does on errors) destroys its stream.
    const abandoned = reader.openEntry('sub/data.bin').stream;
    await new Promise<void>((resolve) => abandoned.once('readable', () => resolve()));
    abandoned.destroy();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await text(reader.openEntry('sub/data.bin').stream)).toBe(files['sub/data.bin']);
    expect((await reader.readEntryBytes('manifest.json')).toString()).toBe(files['manifest.json']);
    await reader.close();
  });

  it('read whole 1 MiB chunks into the compressor input pool, which reads into given-back ones again', async () => {
    const mebibyte = 1024 * 1024;
    const data = Buffer.alloc(4 * mebibyte + 100);
    for (let index = 0; index < data.length; index += 4096) data.writeUInt32BE(index, index);
    const archivePath = path.join(directory, 'large.tar');
    await writeFile(
      archivePath,
      buildRawTar([
        { name: 'skip.txt', data: 'x' },
        { name: 'layer.tar', data },
      ]),
    );
    const reader = await openTarArchive(archivePath);
    try {
      const pool = compressorInputBuffers();
      const sizes: number[] = [];
      const wholes = new Set<Buffer>();
      let offset = 0;
      for await (const chunk of reader.openEntry('layer.tar').stream) {
        const bytes = chunk as Buffer;
        expect(bytes.equals(data.subarray(offset, offset + bytes.byteLength))).toBe(true);
        offset += bytes.byteLength;
        sizes.push(bytes.byteLength);
        // Given back as the block compressor does once done with a whole buffer of its pool.
        const whole = pool.wholeBufferOf(bytes);
        if (whole) {
          wholes.add(whole);
          pool.give(whole);
        } else expect(bytes.byteLength).toBe(100);
      }
      expect(sizes).toEqual([mebibyte, mebibyte, mebibyte, mebibyte, 100]);
      // Four whole reads into at most two buffers (one read is ahead of the consumer).
      expect(wholes.size).toBeGreaterThan(0);
      expect(wholes.size).toBeLessThanOrEqual(2);
    } finally {
      await reader.close();
    }
  });
});
