import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { Digest } from '../digest.js';
import { ErrorCodes } from '../errors.js';
import { readableChunks } from '../readable-chunks.js';
import type { BlobInfo, ImageDestination, ImageSource, PutBlobOptions } from '../transport/contract.js';
import {
  checkedStream,
  copyLayer,
  keepsLayerCompression,
  type LayerCompressionPlan,
  peekStream,
  SourceCheck,
} from './blob.js';
import { compressorInputBuffers, fileReadBuffers, socketReadBuffers } from './buffer-pool.js';
import { decompressedChunkSize } from './compression.js';
import { isLentView, lentViewBuffersOf, releaseCompressedChunk } from './lent-output-buffers.js';
import type { CopyProgressEvent } from './types.js';

function sha256(bytes: Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function chunksOf(count: number, size: number): Buffer[] {
  return Array.from({ length: count }, (_, index) => Buffer.alloc(size, index + 1));
}

/** A check of `chunks`' bytes as `expected` (digest and size of those bytes unless overridden). */
function checkFor(
  chunks: Buffer[],
  expected: { digest?: Digest; size?: number } = {},
): { check: SourceCheck; events: CopyProgressEvent[]; failures: unknown[]; prefixes: Uint8Array[] } {
  const all = Buffer.concat(chunks);
  const events: CopyProgressEvent[] = [];
  const failures: unknown[] = [];
  const prefixes: Uint8Array[] = [];
  const digest = expected.digest ?? sha256(all);
  const size = expected.size ?? all.byteLength;
  const blob: BlobInfo = { digest, size };
  const check = new SourceCheck({ emit: (event) => events.push(event) }, blob, 'layer', {
    expectedDigest: digest,
    expectedSize: size,
    description: `blob ${digest}`,
    onPrefix: (prefix) => prefixes.push(prefix),
    onFailure: (error) => failures.push(error),
  });
  return { check, events, failures, prefixes };
}

/** Collects a stream's chunks and how it ended. */
async function drain(stream: Readable): Promise<{ chunks: Uint8Array[]; error: unknown; ended: boolean }> {
  const chunks: Uint8Array[] = [];
  let ended = false;
  stream.on('end', () => {
    ended = true;
  });
  try {
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (chunk: Uint8Array) => chunks.push(chunk));
      stream.once('end', resolve);
      stream.once('error', reject);
    });
    return { chunks, error: undefined, ended };
  } catch (error) {
    return { chunks, error, ended };
  }
}

describe('checkedStream', () => {
  it('passes the very chunks of the source on, and ends once the check accepted all the bytes', async () => {
    const chunks = chunksOf(8, 4096);
    const { check, events, prefixes } = checkFor(chunks);
    const source = Readable.from(chunks, { objectMode: true });
    const result = await drain(checkedStream(source, check));
    expect(result.error).toBeUndefined();
    expect(result.ended).toBe(true);
    expect(result.chunks).toHaveLength(chunks.length);
    result.chunks.forEach((chunk, index) => {
      expect(chunk).toBe(chunks[index]);
    });
    // The first chunk is long enough: looked at in place.
    expect(prefixes).toEqual([chunks[0]]);
    expect(events.at(-1)).toMatchObject({ type: 'blob-progress', bytes: 8 * 4096, total: 8 * 4096 });
  });

  it('fails with a digest mismatch instead of ending when the bytes are not the blob', async () => {
    const chunks = chunksOf(4, 1024);
    const wrong = sha256(Buffer.from('something else'));
    const { check, failures } = checkFor(chunks, { digest: wrong });
    const result = await drain(checkedStream(Readable.from(chunks, { objectMode: true }), check));
    expect(result.ended).toBe(false);
    expect(result.error).toMatchObject({ code: ErrorCodes.DigestMismatch });
    expect((result.error as Error).message).toContain(
      `expected ${wrong}, got ${sha256(Buffer.concat(chunks))}`,
    );
    expect(failures).toEqual([result.error]);
  });

  it('fails with a size mismatch as soon as more bytes than expected arrive, and destroys the source', async () => {
    const chunks = chunksOf(6, 1024);
    const { check } = checkFor(chunks, { size: 2 * 1024 });
    const source = new PassThrough({ objectMode: true });
    const output = checkedStream(source, check);
    const result = drain(output);
    for (const chunk of chunks.slice(0, 3)) source.write(chunk);
    const outcome = await result;
    expect(outcome.error).toMatchObject({ code: ErrorCodes.SizeMismatch });
    expect((outcome.error as Error).message).toContain('expected 2048 bytes, got more');
    expect(outcome.chunks).toHaveLength(2);
    expect(source.destroyed).toBe(true);
  });

  it('fails with a size mismatch when the source ends short', async () => {
    const chunks = chunksOf(3, 1024);
    const { check } = checkFor(chunks, { size: 4 * 1024 });
    const result = await drain(checkedStream(Readable.from(chunks, { objectMode: true }), check));
    expect(result.ended).toBe(false);
    expect(result.error).toMatchObject({ code: ErrorCodes.SizeMismatch });
    expect((result.error as Error).message).toContain('expected 4096 bytes, got 3072');
  });

  it("fails with the source's error, and with a premature close when the source closes before its end", async () => {
    const chunks = chunksOf(2, 1024);
    const failing = new PassThrough({ objectMode: true });
    const failed = drain(checkedStream(failing, checkFor(chunks).check));
    failing.write(chunks[0]);
    const networkError = Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });
    failing.destroy(networkError);
    expect((await failed).error).toBe(networkError);

    const closing = new PassThrough({ objectMode: true });
    const closed = drain(checkedStream(closing, checkFor(chunks).check));
    closing.write(chunks[0]);
    closing.destroy();
    expect((await closed).error).toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
  });

  it('destroys the source when its consumer destroys it', async () => {
    const source = new PassThrough({ objectMode: true });
    const output = checkedStream(source, checkFor(chunksOf(2, 16)).check);
    output.destroy();
    await new Promise((resolve) => setImmediate(resolve));
    expect(source.destroyed).toBe(true);
  });

  it('pauses the source while its consumer is behind, and resumes it when read', async () => {
    const chunks = chunksOf(64, 64 * 1024);
    const { check } = checkFor(chunks);
    const source = new PassThrough({ objectMode: true, highWaterMark: 4 });
    for (const chunk of chunks) source.write(chunk);
    source.end();
    const output = checkedStream(source, check);
    // Nobody reads yet: the source flows until the output holds its high-water mark (256 KiB), then pauses.
    await new Promise((resolve) => setImmediate(resolve));
    expect(source.isPaused()).toBe(true);
    expect(output.readableLength).toBeGreaterThan(0);
    expect(output.readableLength).toBeLessThanOrEqual(256 * 1024 + 64 * 1024);
    expect(source.readableLength).toBeGreaterThan(32);
    const result = await drain(output);
    expect(result.error).toBeUndefined();
    expect(result.chunks).toHaveLength(chunks.length);
  });

  it('takes a source that ended or failed before it was wrapped', async () => {
    const chunks = chunksOf(1, 8);
    const ended = Readable.from([], { objectMode: true });
    ended.resume();
    await new Promise((resolve) => ended.once('end', resolve));
    const emptyCheck = checkFor([]);
    const result = await drain(checkedStream(ended, emptyCheck.check));
    expect(result.ended).toBe(true);
    // An empty blob still reports its (empty) prefix and final progress.
    expect(emptyCheck.prefixes).toEqual([new Uint8Array(0)]);

    const failed = new PassThrough({ objectMode: true });
    const error = new Error('gone');
    failed.on('error', () => {});
    failed.destroy(error);
    await new Promise((resolve) => setImmediate(resolve));
    expect((await drain(checkedStream(failed, checkFor(chunks).check))).error).toBe(error);
  });
});

describe('SourceCheck', () => {
  it('gathers the prefix across short chunks', () => {
    const bytes = Buffer.from(Array.from({ length: 600 }, (_, index) => index % 251));
    const pieces = [bytes.subarray(0, 2), bytes.subarray(2, 4), bytes.subarray(4)];
    const { check, prefixes } = checkFor(pieces);
    for (const piece of pieces) check.update(piece);
    check.finish();
    expect(prefixes).toHaveLength(1);
    expect(prefixes[0]!.byteLength).toBeGreaterThan(4);
    expect(Buffer.from(prefixes[0]!)).toEqual(bytes.subarray(0, prefixes[0]!.byteLength));
  });
});

describe('SourceCheck hashing off this thread', () => {
  function offThreadCheckFor(chunks: Buffer[], expected: { digest?: Digest; size?: number } = {}) {
    const all = Buffer.concat(chunks);
    const events: CopyProgressEvent[] = [];
    const failures: unknown[] = [];
    const digest = expected.digest ?? sha256(all);
    const size = expected.size ?? all.byteLength;
    const check = new SourceCheck({ emit: (event) => events.push(event) }, { digest, size }, 'layer', {
      expectedDigest: digest,
      expectedSize: size,
      description: `blob ${digest}`,
      onFailure: (error) => failures.push(error),
      offThread: true,
    });
    return { check, events, failures };
  }

  async function feed(check: SourceCheck, chunks: Buffer[]): Promise<void> {
    for (const chunk of chunks) await check.update(chunk);
  }

  it('accepts the blob once its digest, computed off this thread, matches, then emits the final progress', async () => {
    const chunks = [...chunksOf(3, 1024 * 1024), Buffer.alloc(77, 9)];
    const { check, events, failures } = offThreadCheckFor(chunks);
    await feed(check, chunks);
    await check.finishOffThread();
    expect(failures).toEqual([]);
    expect(events.at(-1)).toMatchObject({ type: 'blob-progress', bytes: 3 * 1024 * 1024 + 77 });
  });

  it('fails with a digest mismatch naming both digests, told to onFailure, when the bytes are not the blob', async () => {
    const chunks = chunksOf(4, 1024);
    const wrong = sha256(Buffer.from('something else'));
    const { check, failures, events } = offThreadCheckFor(chunks, { digest: wrong });
    await feed(check, chunks);
    const failure = check.finishOffThread();
    await expect(failure).rejects.toMatchObject({ code: ErrorCodes.DigestMismatch });
    await expect(failure).rejects.toThrow(`expected ${wrong}, got ${sha256(Buffer.concat(chunks))}`);
    expect(failures).toHaveLength(1);
    expect(events.filter((event) => event.type === 'blob-progress' && event.bytes === 4096)).toEqual([]);
  });

  it('holds a chunk in a pooled buffer until it is hashed: given back meanwhile, it is not handed out again', async () => {
    const pool = compressorInputBuffers();
    const chunks = [pool.take(), pool.take()];
    chunks[0]!.fill(1);
    chunks[1]!.fill(2);
    const { check, failures } = offThreadCheckFor(chunks.map((chunk) => Buffer.from(chunk)));
    for (const chunk of chunks) {
      const wait = check.update(chunk);
      // The block compressor is done with it: it gives it back, and the next read goes into a buffer
      // taken from the pool (not this one: it is not hashed yet).
      pool.give(chunk);
      const next = pool.take();
      expect(next).not.toBe(chunk);
      next.fill(0xff);
      await wait;
    }
    await check.finishOffThread();
    expect(failures).toEqual([]);
    // Once hashed, the buffers come back.
    const again = [pool.take(), pool.take()];
    expect(again).toContain(chunks[0]);
    expect(again).toContain(chunks[1]);
  });

  it('fails with a size mismatch before looking at the digest when the source ends short', async () => {
    const chunks = chunksOf(3, 1024);
    const { check } = offThreadCheckFor(chunks, { size: 4 * 1024 });
    await feed(check, chunks);
    await expect(check.finishOffThread()).rejects.toMatchObject({ code: ErrorCodes.SizeMismatch });
  });
});

describe('peekStream', () => {
  it('returns the first bytes and puts them back: the stream is then read from its first byte', async () => {
    const chunks = chunksOf(4, 1024);
    const source = Readable.from(chunks, { objectMode: true });
    const prefix = await peekStream(source, 6);
    expect(prefix).toBe(chunks[0]);
    const result = await drain(source);
    expect(result.ended).toBe(true);
    expect(Buffer.concat(result.chunks)).toEqual(Buffer.concat(chunks));
  });

  it('gathers short chunks, and a stream that ends sooner is put back whole, its end included', async () => {
    const pieces = [Buffer.from([1, 2]), Buffer.from([3])];
    const short = Readable.from(pieces, { objectMode: true });
    expect(Buffer.from(await peekStream(short, 6))).toEqual(Buffer.from([1, 2, 3]));
    const result = await drain(short);
    expect(result.ended).toBe(true);
    expect(Buffer.concat(result.chunks)).toEqual(Buffer.from([1, 2, 3]));

    const empty = Readable.from([], { objectMode: true });
    expect((await peekStream(empty, 6)).byteLength).toBe(0);
    expect((await drain(empty)).ended).toBe(true);
  });

  it("throws the stream's failure, a premature close, and an abort (destroying the stream)", async () => {
    const failing = new PassThrough();
    const error = new Error('gone');
    setImmediate(() => failing.destroy(error));
    await expect(peekStream(failing, 6)).rejects.toBe(error);

    const closing = new PassThrough();
    setImmediate(() => closing.destroy());
    await expect(peekStream(closing, 6)).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });

    const waiting = new PassThrough();
    waiting.on('error', () => {});
    const controller = new AbortController();
    setImmediate(() => controller.abort());
    await expect(peekStream(waiting, 6, controller.signal)).rejects.toMatchObject({
      code: ErrorCodes.Aborted,
    });
    expect(waiting.destroyed).toBe(true);
  });
});

describe('keepsLayerCompression', () => {
  const compress: LayerCompressionPlan = { desired: 'compress', format: 'gzip', recompress: false };
  it('keeps compressed layers when compressing without recompression, and compresses the rest', () => {
    expect(keepsLayerCompression(compress, 'gzip', false)).toBe(true);
    expect(keepsLayerCompression(compress, 'zstd', false)).toBe(true);
    expect(keepsLayerCompression(compress, 'none', false)).toBe(false);
    // xz and bzip2 have no layer media type: always changed.
    expect(keepsLayerCompression(compress, 'xz', false)).toBe(false);
    expect(keepsLayerCompression(compress, 'bzip2', false)).toBe(false);
  });

  it('recompresses layers in another format, or zstd layers without zstd:chunked when chunked', () => {
    const gzip: LayerCompressionPlan = { ...compress, recompress: true };
    expect(keepsLayerCompression(gzip, 'gzip', false)).toBe(true);
    expect(keepsLayerCompression(gzip, 'zstd', false)).toBe(false);
    const chunked: LayerCompressionPlan = {
      desired: 'compress',
      format: 'zstd',
      recompress: true,
      chunked: true,
    };
    expect(keepsLayerCompression(chunked, 'zstd', true)).toBe(true);
    expect(keepsLayerCompression(chunked, 'zstd', false)).toBe(false);
  });

  it('decompresses compressed layers unless their compression is kept', () => {
    const decompress: LayerCompressionPlan = { desired: 'decompress', format: 'gzip', recompress: false };
    expect(keepsLayerCompression(decompress, 'none', false)).toBe(true);
    expect(keepsLayerCompression(decompress, 'gzip', false)).toBe(false);
    expect(keepsLayerCompression({ ...decompress, keep: ['gzip'] }, 'gzip', false)).toBe(true);
    expect(keepsLayerCompression({ ...decompress, keep: ['gzip'] }, 'zstd', false)).toBe(false);
    expect(keepsLayerCompression({ ...decompress, keep: ['gzip'] }, 'xz', false)).toBe(false);
  });
});

describe('copyLayer', () => {
  /** Copies `chunks` as a layer under `plan`; what the destination was given. */
  async function copied(chunks: Buffer[], plan: LayerCompressionPlan | undefined) {
    const bytes = Buffer.concat(chunks);
    const layer: BlobInfo = {
      digest: sha256(bytes),
      size: bytes.byteLength,
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    };
    const received: Uint8Array[] = [];
    const handedBack: Uint8Array[] = [];
    let options: PutBlobOptions | undefined;
    const source = {
      async getBlob() {
        return { stream: Readable.from(chunks, { objectMode: true }), size: bytes.byteLength };
      },
    } as unknown as ImageSource;
    const destination = {
      properties: {},
      async putBlob(stream: Readable, _info: unknown, given: PutBlobOptions) {
        options = given;
        for await (const chunk of readableChunks(stream)) {
          received.push(chunk);
          given.chunkWritten?.(chunk);
          handedBack.push(chunk);
        }
        const all = Buffer.concat(received);
        return { digest: sha256(all), size: all.byteLength };
      },
    } as unknown as ImageDestination;
    const result = await copyLayer(
      {
        source,
        destination,
        signal: undefined,
        retry: { retryTimes: 0, retryDelayMs: undefined, signal: undefined },
        emit: () => {},
      },
      {
        layer,
        plan,
        needDiffId: false,
        canSubstitute: false,
        changedMediaType: () => 'application/vnd.oci.image.layer.v1.tar+gzip',
      } as Parameters<typeof copyLayer>[1],
    );
    return { result, received, options };
  }
  const compress: LayerCompressionPlan = { desired: 'compress', format: 'gzip', recompress: false };
  const gzipChunks = (): Buffer[] => [Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0]), ...chunksOf(4, 1024)];

  it('copies a layer its plan keeps as it is with the very chunks of the source, lent to the destination', async () => {
    const chunks = gzipChunks();
    const { result, received, options } = await copied(chunks, compress);
    expect(result).toMatchObject({ changed: false, compression: 'gzip', result: 'copied' });
    expect(received).toHaveLength(chunks.length);
    received.forEach((chunk, index) => {
      expect(chunk).toBe(chunks[index]);
    });
    expect(options?.chunkWritten).toBeTypeOf('function');
  });

  it('lends only the compressed blocks when the plan changes the bytes, not the source chunks', async () => {
    const { result, options } = await copied(chunksOf(4, 1024), compress);
    expect(result).toMatchObject({ changed: true, compression: 'gzip' });
    // The destination hands back what it wrote: the compressor's lent output buffers, nothing else.
    expect(options?.chunkWritten).toBe(releaseCompressedChunk);
  });

  it('reads into the buffers of a recompressed layer again once decompressed, but for the peeked chunk', async () => {
    const contents = randomBytes(3 * 1024 * 1024 + 5000);
    const gzipped = gzipSync(contents, { level: 1 });
    // The source reads the blob into file read buffers, 1 MiB each, as an oci: source does.
    const chunks: Buffer[] = [];
    for (let offset = 0; offset < gzipped.byteLength; offset += fileReadBuffers.size) {
      const piece = gzipped.subarray(offset, offset + fileReadBuffers.size);
      const memory = fileReadBuffers.take();
      memory.set(piece);
      fileReadBuffers.filled(memory, piece.byteLength);
      chunks.push(memory.subarray(0, piece.byteLength));
    }
    expect(chunks.length).toBe(4);
    const layer: BlobInfo = {
      digest: sha256(gzipped),
      size: gzipped.byteLength,
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    };
    const source = {
      async getBlob() {
        return { stream: Readable.from(chunks, { objectMode: true }), size: gzipped.byteLength };
      },
    } as unknown as ImageSource;
    const received: Buffer[] = [];
    const destination = {
      properties: {},
      async putBlob(stream: Readable) {
        for await (const chunk of readableChunks(stream)) received.push(Buffer.from(chunk));
        const all = Buffer.concat(received);
        return { digest: sha256(all), size: all.byteLength };
      },
    } as unknown as ImageDestination;
    const copy = (uncompressedDigest: Digest | undefined) =>
      copyLayer(
        {
          source,
          destination,
          signal: undefined,
          retry: { retryTimes: 0, retryDelayMs: undefined, signal: undefined },
          emit: () => {},
        },
        {
          layer,
          plan: { desired: 'compress', format: 'zstd', recompress: true },
          needDiffId: false,
          canSubstitute: false,
          ...(uncompressedDigest ? { uncompressedDigest } : {}),
          changedMediaType: () => 'application/vnd.oci.image.layer.v1.tar+zstd',
        } as Parameters<typeof copyLayer>[1],
      );
    // Without the DiffID the source check hashes every chunk: none is read into again.
    await copy(undefined);
    // (The first take is the rest of the last, shorter chunk's buffer.)
    const meanwhile = [fileReadBuffers.take(), fileReadBuffers.take(), fileReadBuffers.take()];
    for (const chunk of chunks.slice(0, 3)) {
      expect(meanwhile.map((buffer) => buffer.buffer)).not.toContain(chunk.buffer);
    }
    received.length = 0;
    const result = await copy(sha256(contents) as Digest);
    expect(result).toMatchObject({ changed: true, compression: 'zstd' });
    const again = [fileReadBuffers.take(), fileReadBuffers.take(), fileReadBuffers.take()].map(
      (buffer) => buffer.buffer,
    );
    // The first chunk was peeked (and hashed) before the decision: left to the garbage collector.
    expect(again).not.toContain(chunks[0]!.buffer);
    expect(again).toContain(chunks[1]!.buffer);
    expect(again).toContain(chunks[2]!.buffer);
  });

  it('decompressing a layer verified by its DiffID: reads into its buffers again, writes into lent views again', async () => {
    const contents = randomBytes(3 * 1024 * 1024 + 5000);
    const gzipped = gzipSync(contents, { level: 1 });
    // Read into socket read buffers, as a registry source does.
    const chunks: Buffer[] = [];
    for (let offset = 0; offset < gzipped.byteLength; offset += socketReadBuffers.size) {
      const piece = gzipped.subarray(offset, offset + socketReadBuffers.size);
      const memory = socketReadBuffers.take();
      memory.set(piece);
      socketReadBuffers.filled(memory, piece.byteLength);
      chunks.push(memory.subarray(0, piece.byteLength));
    }
    expect(chunks.length).toBeGreaterThan(20);
    const layer: BlobInfo = {
      digest: sha256(gzipped),
      size: gzipped.byteLength,
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    };
    const source = {
      async getBlob() {
        return { stream: Readable.from(chunks, { objectMode: true }), size: gzipped.byteLength };
      },
    } as unknown as ImageSource;
    const received: Buffer[] = [];
    const outputMemory = new Set<ArrayBufferLike>();
    let lent = 0;
    const destination = {
      properties: {},
      async putBlob(stream: Readable, _info: unknown, given: PutBlobOptions) {
        for await (const chunk of readableChunks(stream)) {
          received.push(Buffer.from(chunk));
          if (isLentView(chunk)) lent += 1;
          outputMemory.add(chunk.buffer);
          given.chunkWritten?.(chunk);
          // Come back to its pool: as the next write into it would, scribble over it (nothing may read it).
          if (!isLentView(chunk)) new Uint8Array(chunk.buffer).fill(0);
        }
        const all = Buffer.concat(received);
        return { digest: sha256(all), size: all.byteLength };
      },
    } as unknown as ImageDestination;
    const views = lentViewBuffersOf(decompressedChunkSize);
    const copy = (expectedDiffId: Digest | undefined) =>
      copyLayer(
        {
          source,
          destination,
          signal: undefined,
          retry: { retryTimes: 0, retryDelayMs: undefined, signal: undefined },
          emit: () => {},
        },
        {
          layer,
          plan: { desired: 'decompress', format: 'gzip', recompress: false },
          needDiffId: true,
          canSubstitute: false,
          ...(expectedDiffId ? { expectedDiffId } : {}),
          changedMediaType: () => 'application/vnd.oci.image.layer.v1.tar',
        } as Parameters<typeof copyLayer>[1],
      );
    // Without the DiffID the source check hashes every chunk: none is read into again.
    const unverified = await copy(undefined);
    expect(unverified).toMatchObject({ changed: true, compression: 'none', diffId: sha256(contents) });
    expect(Buffer.concat(received).equals(contents)).toBe(true);
    // (The first take is the rest of the last, shorter chunk's buffer.)
    const meanwhile = Array.from({ length: chunks.length }, () => socketReadBuffers.take().buffer);
    for (const chunk of chunks.slice(0, -1)) expect(meanwhile).not.toContain(chunk.buffer);
    received.length = 0;
    lent = 0;
    outputMemory.clear();
    const result = await copy(sha256(contents) as Digest);
    expect(result).toMatchObject({ changed: true, compression: 'none', diffId: sha256(contents) });
    expect(Buffer.concat(received).equals(contents)).toBe(true);
    // The output came in lent views, and every buffer came back once written and hashed.
    expect(lent).toBe(received.length);
    expect(outputMemory.size).toBeGreaterThan(0);
    const idle = Array.from({ length: views.idle }, () => views.take());
    for (const memory of outputMemory) expect(idle.map((buffer) => buffer.buffer)).toContain(memory);
    for (const buffer of idle) views.close(buffer);
    // Nothing hashes the compressed chunks: each buffer is read into again once zlib consumed it.
    const again = Array.from({ length: chunks.length }, () => socketReadBuffers.take().buffer);
    for (const chunk of chunks.slice(0, -1)) expect(again).toContain(chunk.buffer);
  });

  it('still verifies a kept layer: bytes that are not the blob fail', async () => {
    const chunks = gzipChunks();
    const layerChunks = [...chunks];
    layerChunks[2] = Buffer.alloc(1024, 0x55);
    const bytes = Buffer.concat(chunks);
    const source = {
      async getBlob() {
        return { stream: Readable.from(layerChunks, { objectMode: true }), size: bytes.byteLength };
      },
    } as unknown as ImageSource;
    const destination = {
      properties: {},
      async putBlob(stream: Readable) {
        for await (const _chunk of readableChunks(stream));
        return { digest: sha256(bytes), size: bytes.byteLength };
      },
    } as unknown as ImageDestination;
    await expect(
      copyLayer(
        {
          source,
          destination,
          signal: undefined,
          retry: { retryTimes: 0, retryDelayMs: undefined, signal: undefined },
          emit: () => {},
        },
        {
          layer: { digest: sha256(bytes), size: bytes.byteLength },
          plan: compress,
          needDiffId: false,
          canSubstitute: false,
          changedMediaType: () => undefined,
        } as Parameters<typeof copyLayer>[1],
      ),
    ).rejects.toMatchObject({ code: ErrorCodes.DigestMismatch });
  });
});
