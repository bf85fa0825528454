import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import {
  blobWriteStage,
  Digester,
  digestHex,
  digestingStage,
  digestOf,
  isDigest,
  parseDigest,
  verifyingStage,
} from './digest.js';
import { ErrorCodes, isGantryError } from './errors.js';

const emptySha256 = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

async function drain(source: AsyncIterable<Uint8Array>): Promise<number> {
  let total = 0;
  for await (const chunk of source) total += chunk.byteLength;
  return total;
}

describe('parseDigest', () => {
  it.each([emptySha256, `sha512:${'a'.repeat(128)}`, `sha384:${'0'.repeat(96)}`])('accepts %s', (value) => {
    expect(parseDigest(value)).toBe(value);
    expect(isDigest(value)).toBe(true);
  });

  it.each([
    ['sha256:abc', 'invalid checksum digest length'],
    ['sha256', 'invalid checksum digest format'],
    [`md5:${'a'.repeat(32)}`, 'unsupported digest algorithm'],
    [`sha256:${'A'.repeat(64)}`, 'invalid checksum digest length'],
    [`sha256:${'g'.repeat(64)}`, 'invalid checksum digest length'],
    ['', 'invalid checksum digest format'],
  ])('rejects %s', (value, reason) => {
    expect(() => parseDigest(value)).toThrowError(reason);
    expect(isDigest(value)).toBe(false);
    try {
      parseDigest(value);
    } catch (error) {
      expect(isGantryError(error) && error.code).toBe(ErrorCodes.InvalidDigest);
    }
  });
});

describe('digests of content', () => {
  it('digests bytes and strings alike', () => {
    expect(digestOf('')).toBe(emptySha256);
    expect(digestOf(new TextEncoder().encode('abc'))).toBe(digestOf('abc'));
    expect(digestHex(emptySha256)).toBe(emptySha256.slice(7));
  });

  it('digests incrementally', () => {
    const digester = new Digester();
    digester.update(Buffer.from('ab'));
    digester.update(Buffer.from('c'));
    expect(digester.size).toBe(3);
    expect(digester.digest()).toBe(digestOf('abc'));
  });
});

describe('verifyingStage', () => {
  const content = Buffer.from('hello world');
  const digest = digestOf(content);

  it('passes matching content through', async () => {
    const total = await pipeline(
      Readable.from([content.subarray(0, 5), content.subarray(5)]),
      verifyingStage({ expectedDigest: digest, expectedSize: content.length }),
      drain,
    );
    expect(total).toBe(content.length);
  });

  it('fails on a digest mismatch before the consumer sees the end', async () => {
    let sawEnd = false;
    const consumer = async (source: AsyncIterable<Uint8Array>) => {
      for await (const _ of source) {
        // read everything
      }
      sawEnd = true;
    };
    await expect(
      pipeline(
        Readable.from([Buffer.from('hello there')]),
        verifyingStage({ expectedDigest: digest }),
        consumer,
      ),
    ).rejects.toMatchObject({ code: ErrorCodes.DigestMismatch, message: expect.stringContaining(digest) });
    expect(sawEnd).toBe(false);
  });

  it('fails as soon as there are more bytes than expected', async () => {
    await expect(
      pipeline(
        Readable.from([content, content]),
        verifyingStage({ expectedDigest: digest, expectedSize: content.length }),
        drain,
      ),
    ).rejects.toMatchObject({ code: ErrorCodes.SizeMismatch });
  });

  it('fails on fewer bytes than expected', async () => {
    await expect(
      pipeline(
        Readable.from([content.subarray(0, 4)]),
        verifyingStage({ expectedDigest: digest, expectedSize: content.length }),
        drain,
      ),
    ).rejects.toMatchObject({ code: ErrorCodes.SizeMismatch, message: expect.stringContaining('got 4') });
  });
});

describe('digestingStage', () => {
  it('reports digest and size at the end', async () => {
    let result: { digest: string; size: number } | undefined;
    await pipeline(
      Readable.from([Buffer.from('a'), Buffer.from('bc')]),
      digestingStage((value) => {
        result = value;
      }),
      drain,
    );
    expect(result).toEqual({ digest: digestOf('abc'), size: 3 });
  });
});

describe('blobWriteStage', () => {
  it('computes the digest when none is announced, and only counts bytes when one is', async () => {
    const results: Array<{ digest: string; size: number }> = [];
    for (const expected of [undefined, digestOf('announced, trusted')]) {
      await pipeline(
        Readable.from([Buffer.from('ab'), Buffer.from('c')]),
        blobWriteStage(expected, (result) => results.push(result)),
        drain,
      );
    }
    expect(results).toEqual([
      { digest: digestOf('abc'), size: 3 },
      // The caller vouched for this digest (it verifies the stream), so the bytes are not hashed again.
      { digest: digestOf('announced, trusted'), size: 3 },
    ]);
  });
});
