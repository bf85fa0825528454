import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { ErrorCodes } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTarArchive } from './reader.js';
import { createTarWriter } from './writer.js';

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

function chunked(bytes: Buffer, chunkSize: number): Readable {
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < bytes.length; offset += chunkSize)
        yield bytes.subarray(offset, offset + chunkSize);
    })(),
  );
}

const longName = `${'l'.repeat(120)}/${'m'.repeat(120)}/file-with-a-long-name.tar`;

describe('TarWriter', () => {
  it('writes an archive GNU tar lists and extracts, with fixed metadata', async () => {
    const archive = path.join(directory, 'out.tar');
    const spoolDirectory = path.join(directory, 'spool');
    await mkdir(spoolDirectory);
    const writer = createTarWriter(createWriteStream(archive), { temporaryDirectory: spoolDirectory });
    const big = Buffer.alloc(300_001, 7);
    const unknown = Buffer.from('unknown size content');
    const operations = [
      writer.addDirectory('blobs/sha256'),
      writer.addBytes('manifest.json', '[{"Config":"x"}]'),
      writer.addStream('blobs/sha256/big', chunked(big, 65_536), big.length),
      writer.addStreamOfUnknownSize(longName, chunked(unknown, 3)),
      writer.addSymlink('link/layer.tar', '../blobs/sha256/big'),
    ];
    const results = await Promise.all(operations);
    expect(results[3]).toBe(unknown.length);
    await writer.finish();
    expect(await readdir(spoolDirectory)).toEqual([]);

    const listing = execFileSync('tar', ['--numeric-owner', '--full-time', '-tvf', archive], {
      encoding: 'utf8',
    });
    expect(listing).toContain('drwxr-xr-x 0/0');
    expect(listing).toContain('1970-01-01 00:00:00 blobs/sha256/');
    expect(listing).toContain(longName);
    expect(listing).toMatch(
      /lrwxrwxrwx 0\/0 +0 1970-01-01 00:00:00 link\/layer.tar -> \.\.\/blobs\/sha256\/big/,
    );

    const extracted = path.join(directory, 'extracted');
    await mkdir(extracted);
    execFileSync('tar', ['-xf', archive, '-C', extracted]);
    expect(await readFile(path.join(extracted, 'blobs/sha256/big'))).toEqual(big);
    expect(await readFile(path.join(extracted, longName))).toEqual(unknown);
    expect(await readFile(path.join(extracted, 'manifest.json'), 'utf8')).toBe('[{"Config":"x"}]');

    const reader = await openTarArchive(archive);
    expect(await buffer(reader.openEntry('link/layer.tar').stream)).toEqual(big);
    expect(await buffer(reader.openEntry(longName).stream)).toEqual(unknown);
    await reader.close();
  });

  it('writes the same bytes for the same content', async () => {
    const write = async () => {
      const output = new PassThrough();
      const collected = buffer(output);
      const writer = createTarWriter(output);
      await writer.addBytes('a', 'one');
      await writer.addStream('b', Readable.from([Buffer.from('two')]), 3);
      await writer.finish();
      return collected;
    };
    const first = await write();
    expect(first.length).toBe(512 * 4 + 1024);
    expect(await write()).toEqual(first);
  });

  it('streams into a pipe with backpressure while the reader consumes', async () => {
    const output = new PassThrough({ highWaterMark: 1024 });
    const writer = createTarWriter(output);
    const big = Buffer.alloc(5 * 1024 * 1024, 1);
    const consumer = (async () => {
      let total = 0;
      for await (const chunk of output) {
        total += (chunk as Buffer).length;
        await new Promise((resolve) => setImmediate(resolve));
      }
      return total;
    })();
    await writer.addStream('big', chunked(big, 100_000), big.length);
    await writer.finish();
    expect(await consumer).toBe(512 + big.length + 1024);
    expect(writer.bytesWritten).toBe(512 + big.length + 1024);
  });

  it('fails on a stream shorter or longer than announced, and stays failed', async () => {
    for (const [announced, actual] of [
      [10, 5],
      [5, 10],
    ] as const) {
      const output = new PassThrough();
      output.resume();
      const writer = createTarWriter(output);
      await expect(
        writer.addStream('x', Readable.from([Buffer.alloc(actual)]), announced),
      ).rejects.toMatchObject({
        code: ErrorCodes.SizeMismatch,
        message: expect.stringContaining('"x": size mismatch'),
      });
      await expect(writer.addBytes('y', 'z')).rejects.toMatchObject({ code: ErrorCodes.SizeMismatch });
      await expect(writer.finish()).rejects.toMatchObject({ code: ErrorCodes.SizeMismatch });
      expect(output.destroyed).toBe(true);
    }
  });

  it('with padOnSourceError, completes a failed entry with zeros and keeps going', async () => {
    const archive = path.join(directory, 'padded.tar');
    const writer = createTarWriter(createWriteStream(archive));
    async function* failing() {
      yield Buffer.from('abc');
      throw new Error('source broke half-way');
    }
    await expect(
      writer.addStream('broken', Readable.from(failing()), 100_000, { padOnSourceError: true }),
    ).rejects.toThrow('source broke half-way');
    await expect(
      writer.addStream('short', Readable.from([Buffer.from('xy')]), 5, { padOnSourceError: true }),
    ).rejects.toMatchObject({ code: ErrorCodes.SizeMismatch });
    await writer.addBytes('after', 'still fine');
    await writer.finish();
    expect(execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).trim().split('\n')).toEqual([
      'broken',
      'short',
      'after',
    ]);
    const broken = execFileSync('tar', ['-xOf', archive, 'broken']);
    expect(broken.length).toBe(100_000);
    expect(broken.subarray(0, 3).toString()).toBe('abc');
    expect(broken.subarray(3).every((byte) => byte === 0)).toBe(true);
    expect(execFileSync('tar', ['-xOf', archive, 'after'], { encoding: 'utf8' })).toBe('still fine');
  });

  it('fails when a source stream errors', async () => {
    const output = new PassThrough();
    output.resume();
    const writer = createTarWriter(output);
    const failing = new Readable({
      read() {
        this.destroy(new Error('source broke'));
      },
    });
    await expect(writer.addStream('x', failing, 10)).rejects.toThrow('source broke');
    await expect(writer.finish()).rejects.toThrow('source broke');
  });

  it('aborts through its signal', async () => {
    const controller = new AbortController();
    const output = new PassThrough();
    output.resume();
    const writer = createTarWriter(output, { signal: controller.signal });
    const never = new Readable({ read() {} });
    const pending = writer.addStream('x', never, 10);
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: ErrorCodes.Aborted });
    await expect(writer.finish()).rejects.toMatchObject({ code: ErrorCodes.Aborted });
  });
});
