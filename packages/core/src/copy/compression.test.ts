import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { digestOf } from '../digest.js';
import { ErrorCodes } from '../errors.js';
import {
  createCompressor,
  createDecompressor,
  detectCompression,
  diffIdStage,
  peekCompression,
  throughTransform,
  zstdAvailable,
} from './compression.js';

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of source) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

function chunked(bytes: Uint8Array, size: number): AsyncIterable<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length; offset += size)
    parts.push(bytes.subarray(offset, offset + size));
  return Readable.from(parts, { objectMode: true });
}

describe('detectCompression', () => {
  it('recognises gzip and zstd magic numbers', () => {
    expect(detectCompression(gzipSync(Buffer.from('x')))).toBe('gzip');
    expect(detectCompression(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0]))).toBe('zstd');
    expect(detectCompression(Buffer.from('plain tar'))).toBe('none');
    expect(detectCompression(new Uint8Array([]))).toBe('none');
  });
});

describe('peekCompression', () => {
  it('detects across tiny chunks and replays every byte', async () => {
    const gzipped = gzipSync(Buffer.from('hello world'.repeat(50)));
    const { compression, stream } = await peekCompression(chunked(gzipped, 1));
    expect(compression).toBe('gzip');
    expect((await collect(stream)).equals(gzipped)).toBe(true);
  });

  it('handles empty input', async () => {
    const { compression, stream } = await peekCompression(chunked(new Uint8Array(), 1));
    expect(compression).toBe('none');
    expect((await collect(stream)).length).toBe(0);
  });
});

describe('throughTransform', () => {
  it('round-trips through gzip and gunzip with the requested level', async () => {
    const input = Buffer.from('layer content '.repeat(10_000));
    const compressed = await collect(throughTransform(chunked(input, 1000), createCompressor('gzip', 9)));
    expect(detectCompression(compressed)).toBe('gzip');
    expect(gunzipSync(compressed).equals(input)).toBe(true);
    const back = await collect(throughTransform(chunked(compressed, 333), createDecompressor('gzip')));
    expect(back.equals(input)).toBe(true);
  });

  it('propagates corrupt input as an error', async () => {
    const corrupt = Buffer.concat([gzipSync(Buffer.from('abc')).subarray(0, 10), Buffer.from('garbage!!')]);
    await expect(
      collect(throughTransform(chunked(corrupt, 4), createDecompressor('gzip'))),
    ).rejects.toThrow();
  });
});

describe('zstd', () => {
  it('is refused with ERR_GANTRY_NOT_SUPPORTED naming the Node.js version when node:zlib lacks it', () => {
    if (zstdAvailable()) {
      expect(() => createCompressor('zstd')).not.toThrow();
      return;
    }
    expect(() => createCompressor('zstd')).toThrow(
      expect.objectContaining({ code: ErrorCodes.NotSupported }),
    );
    expect(() => createDecompressor('zstd')).toThrow(process.version);
    expect(() => createDecompressor('zstd')).toThrow('22.15');
  });
});

describe('diffIdStage', () => {
  it('passes bytes through unchanged and reports the uncompressed digest of gzip input', async () => {
    const tar = Buffer.from('pretend tar '.repeat(5000));
    const gzipped = gzipSync(tar);
    let diffId: string | undefined;
    const output: Buffer[] = [];
    await pipeline(
      chunked(gzipped, 500),
      diffIdStage((value) => {
        diffId = value;
      }),
      async (source: AsyncIterable<Uint8Array>) => {
        for await (const chunk of source) output.push(Buffer.from(chunk));
      },
    );
    expect(Buffer.concat(output).equals(gzipped)).toBe(true);
    expect(diffId).toBe(digestOf(tar));
  });

  it('reports the digest of uncompressed input itself', async () => {
    const tar = Buffer.from('plain tar bytes');
    let diffId: string | undefined;
    await pipeline(
      chunked(tar, 3),
      diffIdStage((value) => {
        diffId = value;
      }),
      async (source: AsyncIterable<Uint8Array>) => {
        for await (const _chunk of source) {
          // drain
        }
      },
    );
    expect(diffId).toBe(digestOf(tar));
  });
});
