import { createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeChunks } from './destination.js';

function chunksOf(count: number, size: number): Buffer[] {
  return Array.from({ length: count }, (_, index) => Buffer.alloc(size, index + 1));
}

/** A writable that keeps what it is given, each write done on the next turn of the event loop. */
function collector(highWaterMark = 16 * 1024): { output: Writable; written: Buffer[] } {
  const written: Buffer[] = [];
  const output = new Writable({
    highWaterMark,
    write(chunk: Buffer, _encoding, callback) {
      written.push(chunk);
      setImmediate(callback);
    },
  });
  return { output, written };
}

describe('writeChunks', () => {
  let directory: string;
  beforeEach(async () => {
    directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-write-chunks-'));
  });
  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('writes every chunk in order into a file, handing each to `each` first, and resolves once the file is closed', async () => {
    const chunks = chunksOf(64, 64 * 1024);
    const file = path.join(directory, 'blob');
    const output = createWriteStream(file, { highWaterMark: 256 * 1024 });
    const seen: Uint8Array[] = [];
    let endedBefore = false;
    await writeChunks(
      Readable.from(chunks, { objectMode: false }),
      output,
      (chunk) => {
        seen.push(chunk);
        return undefined;
      },
      async () => {
        endedBefore = !output.writableEnded;
      },
    );
    expect(output.closed).toBe(true);
    expect(endedBefore).toBe(true);
    expect(seen).toHaveLength(chunks.length);
    seen.forEach((chunk, index) => {
      expect(chunk).toBe(chunks[index]);
    });
    expect((await readFile(file)).equals(Buffer.concat(chunks))).toBe(true);
  });

  it('pauses the source while a promise of `each` is pending', async () => {
    const chunks = chunksOf(8, 1024);
    const source = new PassThrough({ highWaterMark: 1024 });
    // Room for everything: only the promise holds the source back.
    const { output, written } = collector(1024 * 1024);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let calls = 0;
    const done = writeChunks(
      source,
      output,
      () => {
        calls += 1;
        return calls === 2 ? gate : undefined;
      },
      async () => {},
    );
    for (const chunk of chunks) source.write(chunk);
    source.end();
    await new Promise((resolve) => setTimeout(resolve, 20));
    // The second chunk's promise holds the rest back.
    expect(calls).toBe(2);
    expect(source.isPaused()).toBe(true);
    release();
    await done;
    expect(calls).toBe(chunks.length);
    expect(Buffer.concat(written).equals(Buffer.concat(chunks))).toBe(true);
  });

  it("fails with the source's error after `beforeEnd`, destroying the output", async () => {
    const source = new PassThrough();
    const { output } = collector();
    const order: string[] = [];
    const done = writeChunks(
      source,
      output,
      () => undefined,
      async () => {
        order.push(`beforeEnd, output destroyed: ${output.destroyed}`);
      },
    );
    source.write(Buffer.alloc(10));
    const error = Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });
    source.destroy(error);
    await expect(done).rejects.toBe(error);
    expect(order).toEqual(['beforeEnd, output destroyed: false']);
    expect(output.destroyed).toBe(true);
  });

  it('rejects only once a file output is closed, so a file whose open was still pending can be removed', async () => {
    const file = path.join(directory, 'blob');
    // The open is on the thread pool when the source fails: the file appears after the failure.
    const output = createWriteStream(file, { flags: 'wx' });
    const source = new PassThrough();
    const done = writeChunks(
      source,
      output,
      () => undefined,
      async () => {},
    );
    source.destroy(new Error('size mismatch'));
    await expect(done).rejects.toThrow('size mismatch');
    expect(output.closed).toBe(true);
    await rm(file, { force: true });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(existsSync(file)).toBe(false);

    const aborted = createWriteStream(path.join(directory, 'aborted'), { flags: 'wx' });
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    await expect(
      writeChunks(
        new PassThrough(),
        aborted,
        () => undefined,
        async () => {},
        controller.signal,
      ),
    ).rejects.toThrow('stop');
    expect(aborted.closed).toBe(true);
  });

  it('fails when the source closes before its end, when `each` throws, and when the signal aborts', async () => {
    const closing = new PassThrough();
    const closed = writeChunks(
      closing,
      collector().output,
      () => undefined,
      async () => {},
    );
    closing.write(Buffer.alloc(10));
    closing.destroy();
    await expect(closed).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });

    const throwing = new PassThrough();
    const failure = new Error('size mismatch');
    const thrown = writeChunks(
      throwing,
      collector().output,
      () => {
        throw failure;
      },
      async () => {},
    );
    throwing.write(Buffer.alloc(10));
    await expect(thrown).rejects.toBe(failure);
    expect(throwing.destroyed).toBe(true);

    const controller = new AbortController();
    const aborted = new PassThrough();
    const abortedOutput = collector().output;
    const stopped = writeChunks(
      aborted,
      abortedOutput,
      () => undefined,
      async () => {},
      controller.signal,
    );
    aborted.write(Buffer.alloc(10));
    const reason = new Error('stop');
    controller.abort(reason);
    await expect(stopped).rejects.toBe(reason);
    expect(aborted.destroyed).toBe(true);
    expect(abortedOutput.destroyed).toBe(true);
  });

  it('fails when the output closes before the end of the bytes', async () => {
    const source = new PassThrough();
    const { output } = collector();
    const done = writeChunks(
      source,
      output,
      () => undefined,
      async () => {},
    );
    source.write(Buffer.alloc(10));
    await new Promise((resolve) => setImmediate(resolve));
    output.destroy();
    await expect(done).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
    expect(source.destroyed).toBe(true);
  });

  it("fails with the output's error, destroying the source", async () => {
    const source = new PassThrough();
    const failure = new Error('ENOSPC');
    const output = new Writable({
      write(_chunk, _encoding, callback) {
        callback(failure);
      },
    });
    const done = writeChunks(
      source,
      output,
      () => undefined,
      async () => {},
    );
    source.write(Buffer.alloc(10));
    await expect(done).rejects.toBe(failure);
    expect(source.destroyed).toBe(true);
  });

  it('takes a source that ended before it was given', async () => {
    const ended = Readable.from([], { objectMode: false });
    ended.resume();
    await new Promise((resolve) => ended.once('end', resolve));
    const { output, written } = collector();
    await writeChunks(
      ended,
      output,
      () => undefined,
      async () => {},
    );
    expect(written).toEqual([]);
    expect(output.writableFinished).toBe(true);
  });
});
