import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GrowingSpool, ReadBufferRecycler } from './growing-spool.js';

let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gantry-growing-spool-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

/** A source whose chunks are pushed by the test, one at a time. */
function pushedSource() {
  const queue: Array<Uint8Array | Error | null> = [];
  let wake: (() => void) | undefined;
  const push = (item: Uint8Array | Error | null) => {
    queue.push(item);
    wake?.();
  };
  async function* source(): AsyncGenerator<Uint8Array> {
    for (;;) {
      while (queue.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      const item = queue.shift()!;
      if (item === null) return;
      if (item instanceof Error) throw item;
      yield item;
    }
  }
  return { push, source: source() };
}

describe('GrowingSpool', () => {
  it('lets a reader follow the file as it is written, ending only once the blob is finished', async () => {
    const spool = new GrowingSpool(join(directory, 'blob'));
    const { push, source } = pushedSource();
    const writing = spool.write(source);
    const reader = spool.read();
    const first = randomBytes(3000);
    push(first);
    // The reader gets the first chunk while the writer still waits for more.
    const got = await reader.next();
    expect(Buffer.compare(got.value as Buffer, first)).toBe(0);
    const second = randomBytes(5000);
    push(second);
    push(null);
    await writing;
    // Written, but not finished (verified): the reader gives the bytes and then waits.
    const more = await reader.next();
    expect(Buffer.compare(more.value as Buffer, second)).toBe(0);
    let ended = false;
    const end = reader.next().then((result) => {
      ended = result.done === true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(ended).toBe(false);
    spool.finish({ digest: 'sha256:x', size: 8000 });
    await end;
    expect(ended).toBe(true);
    expect(await spool.completed()).toEqual({ digest: 'sha256:x', size: 8000 });
    expect(await readFile(spool.path)).toEqual(Buffer.concat([first, second]));
    expect((await stat(spool.path)).mode & 0o777).toBe(0o600);
  });

  it('writes large inputs in batches and a reader started late reads it all', async () => {
    const spool = new GrowingSpool(join(directory, 'blob'));
    const data = randomBytes(5 * 1024 * 1024 + 17);
    async function* chunks(): AsyncGenerator<Uint8Array> {
      for (let offset = 0; offset < data.length; offset += 65_536)
        yield data.subarray(offset, offset + 65_536);
    }
    await spool.write(chunks());
    spool.finish({ digest: 'sha256:y', size: data.length });
    const pieces: Buffer[] = [];
    for await (const piece of spool.read()) pieces.push(piece);
    expect(Buffer.concat(pieces).equals(data)).toBe(true);
  });

  it("makes readers throw the writer's failure, even after everything written was read", async () => {
    const spool = new GrowingSpool(join(directory, 'blob'));
    const { push, source } = pushedSource();
    const writing = spool.write(source);
    const reader = spool.read();
    push(Buffer.from('partial'));
    expect((await reader.next()).value?.toString()).toBe('partial');
    const waiting = reader.next();
    push(new Error('connection reset'));
    await expect(writing).rejects.toThrow('connection reset');
    spool.fail(new Error('connection reset'));
    await expect(waiting).rejects.toThrow('connection reset');
    await expect(spool.completed()).rejects.toThrow('connection reset');
    expect(spool.failed).toBe(true);
  });

  it('stops a reader when its signal is aborted', async () => {
    const spool = new GrowingSpool(join(directory, 'blob'));
    const { push, source } = pushedSource();
    const writing = spool.write(source);
    const controller = new AbortController();
    const reader = spool.read(controller.signal);
    push(Buffer.from('a'));
    await reader.next();
    controller.abort(new Error('stopped'));
    push(Buffer.from('b'));
    await expect(reader.next()).rejects.toThrow('stopped');
    push(null);
    await writing;
  });
});

describe('ReadBufferRecycler', () => {
  it('reads into a buffer again only once the chunk read into it was given back', async () => {
    const buffers = new ReadBufferRecycler();
    const first = buffers.take(1000);
    const second = buffers.take(1000);
    expect(second.buffer).not.toBe(first.buffer);
    buffers.giveBack(Buffer.from('not one of ours'));
    expect(buffers.take(10).buffer).not.toBe(first.buffer);
    buffers.giveBack(first.subarray(0, 10));
    expect(buffers.take(1000).buffer).toBe(first.buffer);
  });

  it('lets a spool reader read a whole blob through a few recycled buffers', async () => {
    const path = join(directory, 'blob');
    const content = randomBytes(5 * 1024 * 1024 + 17);
    const spool = new GrowingSpool(path);
    await spool.write(
      (async function* () {
        yield content;
      })(),
    );
    spool.finish({ digest: 'sha256:x', size: content.length });
    const buffers = new ReadBufferRecycler();
    const seen = new Set<ArrayBufferLike>();
    const read: Buffer[] = [];
    for await (const chunk of GrowingSpool.ofFile(path, { digest: 'sha256:x', size: content.length }).read(
      undefined,
      buffers,
    )) {
      seen.add(chunk.buffer);
      read.push(Buffer.from(chunk));
      buffers.giveBack(chunk);
    }
    expect(Buffer.concat(read).equals(content)).toBe(true);
    expect(seen.size).toBe(1);
  });
});
