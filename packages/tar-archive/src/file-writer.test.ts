import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { ErrorCodes } from '@gantry/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fitsUstarHeader, SeekableTarWriter } from './file-writer.js';
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
});
