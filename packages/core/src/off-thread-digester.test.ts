import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorCodes } from './errors.js';
import {
  OffThreadDigester,
  offThreadDigestAvailable,
  offThreadVerifyingStage,
} from './off-thread-digester.js';

function expected(algorithm: string, chunks: readonly Uint8Array[]): string {
  const hash = createHash(algorithm);
  for (const chunk of chunks) hash.update(chunk);
  return `${algorithm}:${hash.digest('hex')}`;
}

describe('OffThreadDigester', () => {
  const environment = process.env.GANTRY_OFF_THREAD_DIGEST;
  afterEach(() => {
    if (environment === undefined) delete process.env.GANTRY_OFF_THREAD_DIGEST;
    else process.env.GANTRY_OFF_THREAD_DIGEST = environment;
  });

  it('computes SHA-256 off this thread where the system has OpenSSL 3 (as the test machines do)', () => {
    expect(offThreadDigestAvailable()).toBe(true);
  });

  it('gives the digest of every chunk in order, whatever their sizes', async () => {
    const chunks = [
      randomBytes(1),
      new Uint8Array(0),
      randomBytes(5),
      randomBytes(1024 * 1024),
      randomBytes(65_535),
      randomBytes(3),
      randomBytes(2 * 1024 * 1024 + 7),
    ];
    const digester = new OffThreadDigester();
    for (const chunk of chunks) await digester.update(chunk);
    expect(digester.size).toBe(chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0));
    expect(await digester.digest()).toBe(expected('sha256', chunks));
  });

  it('hashes small chunks copied together: a stream of tiny pieces makes few thread-pool calls', async () => {
    const bytes = randomBytes(600 * 1024);
    const chunks: Uint8Array[] = [];
    for (let offset = 0; offset < bytes.length; ) {
      const size = chunks.length % 500 === 499 ? 40_000 : 1 + (chunks.length % 7);
      chunks.push(bytes.subarray(offset, offset + size));
      offset += size;
    }
    const digester = new OffThreadDigester();
    for (const chunk of chunks) await digester.update(chunk);
    expect(await digester.digest()).toBe(expected('sha256', chunks));
    // Thousands of chunks, a few dozen calls: each large chunk, and a batch of the small ones before it.
    expect(chunks.length).toBeGreaterThan(5000);
    expect(digester.poolCalls).toBeLessThan(60);
  });

  it('hashes views of a larger buffer as the views, not their whole buffer', async () => {
    const backing = randomBytes(4096);
    const chunks = [backing.subarray(10, 100), backing.subarray(2000, 4000)];
    const digester = new OffThreadDigester();
    for (const chunk of chunks) digester.update(chunk);
    expect(await digester.digest()).toBe(expected('sha256', chunks));
  });

  it('asks the caller to wait once more than its limit waits to be hashed, and lets it go on later', async () => {
    // Chunks of 16 KiB or more are queued as they are (smaller ones are batched first).
    const digester = new OffThreadDigester('sha256', 20_000);
    const chunks = [randomBytes(17_000), randomBytes(17_000), randomBytes(17_000)];
    expect(digester.update(chunks[0]!)).toBeUndefined();
    const wait = digester.update(chunks[1]!);
    expect(wait).toBeInstanceOf(Promise);
    await wait;
    await digester.update(chunks[2]!);
    expect(await digester.digest()).toBe(expected('sha256', chunks));
  });

  it('computes other algorithms, and SHA-256 when turned off, on this thread', async () => {
    const chunks = [randomBytes(300_000), randomBytes(17)];
    const sha512 = new OffThreadDigester('sha512', 10);
    for (const chunk of chunks) expect(sha512.update(chunk)).toBeUndefined();
    expect(await sha512.digest()).toBe(expected('sha512', chunks));

    process.env.GANTRY_OFF_THREAD_DIGEST = 'off';
    const onThread = new OffThreadDigester('sha256', 10);
    for (const chunk of chunks) expect(onThread.update(chunk)).toBeUndefined();
    expect(await onThread.digest()).toBe(expected('sha256', chunks));
  });

  it('tells `hashed` of each chunk once nothing reads it any more, only after its bytes were hashed', async () => {
    const large = randomBytes(512 * 1024);
    const small = randomBytes(100);
    const digester = new OffThreadDigester('sha256');
    const told: string[] = [];
    digester.update(large, () => {
      // Scribbling over it now must not change the digest: it was hashed.
      told.push('large');
      large.fill(0);
    });
    // A small chunk is copied into a batch: free at once.
    digester.update(small, () => told.push('small'));
    expect(told).toEqual(['small']);
    const copyOfLarge = Buffer.from(large);
    const digest = await digester.digest();
    expect(told).toEqual(['small', 'large']);
    expect(digest).toBe(expected('sha256', [copyOfLarge, small]));
    // On this thread (another algorithm): told at once.
    const onThread = new OffThreadDigester('sha512');
    let toldOnThread = false;
    onThread.update(randomBytes(64 * 1024), () => {
      toldOnThread = true;
    });
    expect(toldOnThread).toBe(true);
  });

  it('digests empty input', async () => {
    expect(await new OffThreadDigester().digest()).toBe(expected('sha256', []));
  });
});

describe('offThreadVerifyingStage', () => {
  async function* chunksOf(chunks: readonly Uint8Array[]): AsyncGenerator<Uint8Array> {
    yield* chunks;
  }

  /** Reads `stream` and checks that it passed `chunks` on as they are (the same objects, in order). */
  async function expectPassedOn(stream: AsyncIterable<Uint8Array>, chunks: Uint8Array[]): Promise<void> {
    const out: Uint8Array[] = [];
    for await (const chunk of stream) out.push(chunk);
    expect(out).toHaveLength(chunks.length);
    for (const [index, chunk] of out.entries()) expect(chunk).toBe(chunks[index]);
  }

  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('passes the chunks through unchanged and ends cleanly when they have the digest', async () => {
    const chunks = [randomBytes(100), randomBytes(3 * 1024 * 1024), new Uint8Array(0), randomBytes(7)];
    const stage = offThreadVerifyingStage({ expectedDigest: expected('sha256', chunks) });
    await expectPassedOn(stage(chunksOf(chunks)), chunks);
  });

  it('fails with ERR_GANTRY_DIGEST_MISMATCH before the stream ends when the bytes are not the digest', async () => {
    const chunks = [randomBytes(64 * 1024), randomBytes(64 * 1024)];
    const stage = offThreadVerifyingStage({
      expectedDigest: expected('sha256', [chunks[0]!]),
      description: 'layer x',
    });
    const seen: Uint8Array[] = [];
    const failure = await (async () => {
      for await (const chunk of stage(chunksOf(chunks))) seen.push(chunk);
    })().catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: ErrorCodes.DigestMismatch });
    expect(String(failure)).toContain('layer x: digest mismatch');
    // Every chunk was passed on; the failure replaced the end of the stream.
    expect(seen).toHaveLength(2);
  });

  it('verifies other algorithms too (on this thread)', async () => {
    const chunks = [randomBytes(1000), randomBytes(70_000)];
    const stage = offThreadVerifyingStage({ expectedDigest: expected('sha512', chunks) });
    await expectPassedOn(stage(chunksOf(chunks)), chunks);
  });

  it('holds each chunk from before it is passed on until the run it was hashed in is hashed (`hold`)', async () => {
    const backing = randomBytes(512 * 1024);
    const views = [0, 1, 2, 3].map((index) => backing.subarray(index * 128 * 1024, (index + 1) * 128 * 1024));
    const other = randomBytes(200 * 1024);
    const chunks = [...views, other];
    const held = new Map<ArrayBufferLike, number>();
    const events: string[] = [];
    const stage = offThreadVerifyingStage({
      expectedDigest: expected('sha256', chunks),
      hold: {
        start: (chunk) => {
          held.set(chunk.buffer, (held.get(chunk.buffer) ?? 0) + 1);
          events.push(`start ${chunk.byteLength}`);
        },
        end: (run, count) => {
          held.set(run.buffer, held.get(run.buffer)! - count);
          events.push(`end ${run.byteLength} ${count}`);
        },
      },
    });
    const passedOn: Uint8Array[] = [];
    for await (const chunk of stage(chunksOf(chunks))) {
      // Held when it reaches the reader.
      expect(held.get(chunk.buffer)).toBeGreaterThan(0);
      passedOn.push(chunk);
    }
    expect(passedOn).toHaveLength(chunks.length);
    for (const [index, chunk] of passedOn.entries()) expect(chunk).toBe(chunks[index]);
    expect([...held.values()]).toEqual([0, 0]);
    expect(events.filter((event) => event.startsWith('end'))).toEqual([
      `end ${512 * 1024} 4`,
      `end ${200 * 1024} 1`,
    ]);
  });

  it('hands adjacent views of one buffer over together (a decompressor output buffer: one update)', async () => {
    const update = vi.spyOn(OffThreadDigester.prototype, 'update');
    const backing = randomBytes(1024 * 1024);
    const views: Uint8Array[] = [];
    for (let offset = 0; offset < backing.length; offset += 128 * 1024) {
      views.push(backing.subarray(offset, offset + 128 * 1024));
    }
    // Separate buffers, and views that are not adjacent, are handed over one by one.
    const other = randomBytes(300 * 1024);
    const apart = [other.subarray(0, 100 * 1024), other.subarray(200 * 1024)];
    const chunks = [...views, ...apart];
    const stage = offThreadVerifyingStage({ expectedDigest: expected('sha256', chunks) });
    await expectPassedOn(stage(chunksOf(chunks)), chunks);
    expect(update).toHaveBeenCalledTimes(3);
    expect(update.mock.calls[0]![0].byteLength).toBe(1024 * 1024);
  });
});
