import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { ErrorCodes } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeHeaders, fitsUstarHeader, SeekableTarWriter } from './file-writer.js';
import { openTarArchive } from './reader.js';
import { createTarWriter } from './writer.js';

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

function chunks(bytes: Buffer, size: number): Buffer[] {
  const result: Buffer[] = [];
  for (let offset = 0; offset < bytes.length; offset += size)
    result.push(bytes.subarray(offset, offset + size));
  return result;
}

async function* failingAfter(bytes: Buffer, message: string): AsyncGenerator<Uint8Array> {
  yield bytes;
  throw new Error(message);
}

async function openWriter(name: string) {
  const file = path.join(directory, name);
  const handle = await open(file, 'wx');
  return { file, handle, writer: new SeekableTarWriter(handle) };
}

function list(file: string): string[] {
  return execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n');
}

/** Longer than 100 bytes, but fits ustar's prefix and name fields: no PAX header. */
const prefixedName = `blobs/sha384/${'c'.repeat(96)}`;
const longName = `${'l'.repeat(120)}/${'m'.repeat(120)}/file-with-a-long-name.tar`;

describe('SeekableTarWriter', () => {
  it('writes the same bytes as TarWriter (tar-stream) for the same entries', async () => {
    const big = Buffer.alloc(300_001, 7);
    const streamed = path.join(directory, 'stream.tar');
    const reference = createTarWriter(createWriteStream(streamed));
    await reference.addDirectory('blobs/sha256');
    await reference.addBytes('manifest.json', '[{"Config":"x"}]', { mode: 0o444 });
    await reference.addStream('blobs/sha256/big', Readable.from(chunks(big, 65_536)), big.length);
    await reference.addBytes(longName, 'long');
    await reference.addSymlink('link/layer.tar', '../blobs/sha256/big');
    await reference.addSymlink('other', `../${'t'.repeat(130)}`);
    await reference.finish();

    const { file, handle, writer } = await openWriter('file.tar');
    await writer.addDirectory('blobs/sha256');
    await writer.addBytes('manifest.json', '[{"Config":"x"}]', { mode: 0o444 });
    await writer.addStream('blobs/sha256/big', Readable.from(chunks(big, 65_536)), big.length);
    await writer.addBytes(longName, 'long');
    await writer.addSymlink('link/layer.tar', '../blobs/sha256/big');
    await writer.addSymlink('other', `../${'t'.repeat(130)}`);
    await writer.finish();
    await handle.close();

    expect((await readFile(file)).equals(await readFile(streamed))).toBe(true);
    expect(writer.bytesWritten).toBe((await readFile(file)).length);
  });

  it('names and sizes an entry when it ends, as GNU tar and our reader read it', async () => {
    const { file, handle, writer } = await openWriter('late.tar');
    const data = Buffer.alloc(1_500_000, 3);
    const entry = await writer.beginEntry();
    for (const chunk of chunks(data, 70_000)) await entry.write(chunk);
    expect(entry.size).toBe(data.length);
    // Queued behind the open entry: written after it is committed.
    const after = writer.addBytes('after', 'x');
    expect(writer.isIdle).toBe(false);
    await entry.commit('0123456789abcdef.tar', { mode: 0o444 });
    await after;
    await writer.finish();
    await handle.close();
    expect(writer.isIdle).toBe(true);
    expect(list(file)).toEqual(['0123456789abcdef.tar', 'after']);
    expect(execFileSync('tar', ['-tvf', file], { encoding: 'utf8' })).toMatch(/^-r--r--r-- /);
    const reader = await openTarArchive(file);
    try {
      const stored = reader.get('0123456789abcdef.tar')!;
      expect(stored.size).toBe(data.length);
      expect((await reader.readEntryBytes(stored.name)).equals(data)).toBe(true);
    } finally {
      await reader.close();
    }
  });

  it('hands each chunk of addStream to chunkWritten once it is in the file, and none of a failed entry', async () => {
    const { file, handle, writer } = await openWriter('written.tar');
    const bytes = Buffer.alloc(3 * 1024 * 1024 + 100);
    for (let index = 0; index < bytes.length; index += 1) bytes[index] = (index * 13) & 0xff;
    const pieces = chunks(Buffer.from(bytes), 64 * 1024).map((piece) => Buffer.from(piece));
    const handedBack: Uint8Array[] = [];
    await writer.addStream('layer', Readable.from(pieces), bytes.length, {
      // As a pool reading into the chunk again would: bytes not yet in the file would be lost.
      chunkWritten: (chunk) => {
        handedBack.push(chunk);
        chunk.fill(0);
      },
    });
    expect(handedBack).toEqual(pieces);
    expect(new Set(handedBack).size).toBe(pieces.length);
    const failed: Uint8Array[] = [];
    await expect(
      writer.addStream('broken', failingAfter(Buffer.alloc(100, 2), 'source broke'), 1000, {
        chunkWritten: (chunk) => failed.push(chunk),
      }),
    ).rejects.toThrow(/source broke/);
    expect(failed).toEqual([]);
    await writer.finish();
    await handle.close();
    const reader = await openTarArchive(file);
    try {
      expect((await reader.readEntryBytes('layer')).equals(bytes)).toBe(true);
    } finally {
      await reader.close();
    }
  });

  it('takes back a discarded entry and an entry whose source fails, and stays usable', async () => {
    const { file, handle, writer } = await openWriter('back.tar');
    await writer.addBytes('first', 'one');
    const discarded = await writer.beginEntry();
    await discarded.write(Buffer.alloc(2_000_000, 1));
    await discarded.discard();
    await expect(
      writer.addStream('broken', failingAfter(Buffer.alloc(100, 2), 'source broke'), 1000),
    ).rejects.toThrow(/source broke/);
    await expect(writer.addStream('short', Readable.from([Buffer.alloc(10)]), 11)).rejects.toMatchObject({
      code: ErrorCodes.SizeMismatch,
    });
    await expect(writer.addStream('long', Readable.from([Buffer.alloc(12)]), 11)).rejects.toMatchObject({
      code: ErrorCodes.SizeMismatch,
    });
    await writer.addBytes('second', 'two');
    await writer.finish();
    await handle.close();
    expect(list(file)).toEqual(['first', 'second']);
    // 2 entries of one data block each, and the end blocks: nothing of the failed entries remains.
    expect((await readFile(file)).length).toBe(2 * 1024 + 1024);
  });

  it('hands each chunk written to an entry begun without a size to chunkWritten once it is in the file', async () => {
    const { file, handle, writer } = await openWriter('begun.tar');
    const bytes = Buffer.alloc(3 * 1024 * 1024 + 100);
    for (let index = 0; index < bytes.length; index += 1) bytes[index] = (index * 11) & 0xff;
    const pieces = chunks(Buffer.from(bytes), 64 * 1024).map((piece) => Buffer.from(piece));
    const handedBack: Uint8Array[] = [];
    const entry = await writer.beginEntry({
      // As a pool reading into the chunk again would: bytes not yet in the file would be lost.
      chunkWritten: (chunk) => {
        handedBack.push(chunk);
        chunk.fill(0);
      },
    });
    for (const piece of pieces) await entry.write(piece);
    await entry.commit('layer');
    expect(handedBack).toHaveLength(pieces.length);
    for (const [index, chunk] of handedBack.entries()) expect(chunk).toBe(pieces[index]);
    await writer.finish();
    await handle.close();
    const reader = await openTarArchive(file);
    try {
      expect((await reader.readEntryBytes('layer')).equals(bytes)).toBe(true);
    } finally {
      await reader.close();
    }
  });

  it('refuses a late name that does not fit one ustar header, taking the entry back', async () => {
    expect(fitsUstarHeader(`${'a'.repeat(64)}.tar`)).toBe(true);
    expect(fitsUstarHeader(longName.replaceAll('/', '-'))).toBe(false);
    const { file, handle, writer } = await openWriter('long.tar');
    const entry = await writer.beginEntry();
    await entry.write(Buffer.from('data'));
    await expect(entry.commit(longName.replaceAll('/', '-'))).rejects.toMatchObject({
      code: ErrorCodes.Internal,
    });
    await writer.addBytes('next', 'n');
    await writer.finish();
    await handle.close();
    expect(list(file)).toEqual(['next']);
  });

  it('reserves the header(s) of a name given before the data, PAX included, as TarWriter writes them', async () => {
    const big = Buffer.alloc(1_300_000, 5);
    const streamed = path.join(directory, 'stream.tar');
    const reference = createTarWriter(createWriteStream(streamed));
    await reference.addStream(longName, Readable.from(chunks(big, 65_536)), big.length);
    await reference.addStream('short', Readable.from([Buffer.from('abc')]), 3, { mode: 0o444 });
    await reference.addStream(prefixedName, Readable.from([Buffer.from('split')]), 5);
    await reference.finish();

    const { file, handle, writer } = await openWriter('named.tar');
    const long = await writer.beginEntry({ name: longName });
    for (const chunk of chunks(big, 65_536)) await long.write(chunk);
    await long.commit();
    const short = await writer.beginEntry({ name: 'short', mode: 0o444 });
    await short.write(Buffer.from('abc'));
    await short.commit('short');
    const prefixed = await writer.beginEntry({ name: prefixedName });
    await prefixed.write(Buffer.from('split'));
    await prefixed.commit();
    await writer.finish();
    await handle.close();

    expect((await readFile(file)).equals(await readFile(streamed))).toBe(true);
    expect(list(file)).toEqual([longName, 'short', prefixedName]);
  });

  it('refuses to commit a named entry under another name or an entry without a name, taking it back', async () => {
    const { file, handle, writer } = await openWriter('renamed.tar');
    await expect(writer.beginEntry({ name: '../outside' })).rejects.toMatchObject({
      code: ErrorCodes.InvalidLayout,
    });
    const named = await writer.beginEntry({ name: longName });
    await named.write(Buffer.from('data'));
    await expect(named.commit('other')).rejects.toMatchObject({ code: ErrorCodes.Internal });
    const unnamed = await writer.beginEntry();
    await unnamed.write(Buffer.from('data'));
    await expect(unnamed.commit()).rejects.toMatchObject({ code: ErrorCodes.Internal });
    await writer.addBytes('next', 'n');
    await writer.finish();
    await handle.close();
    expect(list(file)).toEqual(['next']);
    expect((await readFile(file)).length).toBe(1024 + 1024);
  });

  it('encodes sizes of 8 GiB and more in base-256, which GNU tar and our reader read', async () => {
    const size = 8 * 1024 ** 3 + 5;
    const header = encodeHeaders({ name: 'huge.bin', type: 'file', size, mode: 0o644, mtime: 0 });
    expect(header.length).toBe(512);
    expect(header[124]).toBe(0x80);
    let decoded = 0n;
    for (let position = 125; position < 136; position++)
      decoded = (decoded << 8n) | BigInt(header[position]!);
    expect(Number(decoded)).toBe(size);
    // A sparse archive file: the header, 8 GiB of holes as data, padding, end blocks.
    const file = path.join(directory, 'huge.tar');
    const handle = await open(file, 'wx');
    try {
      await handle.write(header, 0, 512, 0);
      await handle.truncate(512 + size + ((512 - (size % 512)) % 512) + 1024);
    } finally {
      await handle.close();
    }
    expect(execFileSync('tar', ['-tvf', file], { encoding: 'utf8' })).toMatch(/ 8589934597 .* huge\.bin/);
    const reader = await openTarArchive(file);
    try {
      expect(reader.get('huge.bin')?.size).toBe(size);
    } finally {
      await reader.close();
    }
  });

  it('fails every later call after abort(), and closes the file', async () => {
    const { handle, writer } = await openWriter('aborted.tar');
    const entry = await writer.beginEntry();
    const queued = writer.addBytes('queued', 'q');
    writer.abort();
    await expect(entry.write(Buffer.from('x'))).rejects.toMatchObject({ code: ErrorCodes.Aborted });
    await entry.discard();
    await expect(queued).rejects.toMatchObject({ code: ErrorCodes.Aborted });
    await expect(writer.finish()).rejects.toMatchObject({ code: ErrorCodes.Aborted });
    await expect(handle.stat()).rejects.toThrow();
  });
  it('writes small entries queued while it is busy with one system call, in call order, leaving out aborted ones', async () => {
    const file = path.join(directory, 'batched.tar');
    const handle = await open(file, 'wx');
    const writes: number[] = [];
    // The handle, counting the writes that reach the file (their lengths).
    const counting = new Proxy(handle, {
      get(target, property) {
        if (property === 'write' || property === 'writev') {
          return (...args: unknown[]) => {
            const data = args[0];
            writes.push(
              Array.isArray(data)
                ? data.reduce((sum: number, part: Uint8Array) => sum + part.byteLength, 0)
                : (args[2] as number),
            );
            return (target[property] as (...values: unknown[]) => unknown).apply(target, args);
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const writer = new SeekableTarWriter(counting);
    const held = await writer.beginEntry({ name: 'first' });
    await held.write(Buffer.from('held'));
    const aborted = new AbortController();
    const small = [
      writer.addBytes('a/VERSION', '1.0'),
      writer.addSymlink('a/layer.tar', '../first'),
      writer.addBytes('a/json', '{}', { signal: aborted.signal }),
      writer.addDirectory('d'),
    ];
    // A stream entry, then a small one: the small one is written after the stream, not with the batch.
    const streamed = writer.addStream('big', Readable.from([Buffer.alloc(2000, 1)]), 2000);
    const after = writer.addBytes('after', 'x');
    aborted.abort();
    const writesBeforeCommit = writes.length;
    await held.commit();
    const results = await Promise.allSettled([...small, streamed, after]);
    expect(results.map((result) => result.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
      'fulfilled',
      'fulfilled',
    ]);
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ code: ErrorCodes.Aborted });
    await writer.finish();
    await handle.close();
    // One write for VERSION (header and a data block), layer.tar and d (a header each); separately they
    // would be writes of 1024, 512 and 512 bytes.
    const batchedLength = 1024 + 512 + 512;
    expect(writes.slice(writesBeforeCommit)).toContain(batchedLength);
    expect(list(file)).toEqual(['first', 'a/VERSION', 'a/layer.tar', 'd/', 'big', 'after']);
  });
});
