import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type Digest, digestingStage, verifyingStage } from './digest.js';
import { digestThreadRunning, ThreadDigester, threadDigestMinimumSize } from './digest-thread.js';

const size = threadDigestMinimumSize + 3 * 1024 * 1024 + 17;
const data = randomBytes(size);
const expected = `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;

async function* chunksOf(bytes: Uint8Array, chunkSize = 65_536 + 3) {
  for (let offset = 0; offset < bytes.byteLength; offset += chunkSize)
    yield bytes.subarray(offset, offset + chunkSize);
}

async function drain(iterable: AsyncIterable<Uint8Array>): Promise<number> {
  let total = 0;
  for await (const chunk of iterable) total += chunk.byteLength;
  return total;
}

describe('ThreadDigester', () => {
  it('computes the same digest as node:crypto, for sha256 and sha512', async () => {
    const digester = new ThreadDigester('sha256');
    for await (const chunk of chunksOf(data)) await digester.update(chunk);
    expect(digester.size).toBe(size);
    expect(await digester.digest()).toBe(expected);
    const sha512 = new ThreadDigester('sha512');
    await sha512.update(data);
    expect(await sha512.digest()).toBe(`sha512:${createHash('sha512').update(data).digest('hex')}`);
  });

  it('keeps several digests apart and does not need the caller to keep its chunks', async () => {
    const first = new ThreadDigester('sha256');
    const second = new ThreadDigester('sha256');
    const scratch = Buffer.alloc(1000);
    for (let index = 0; index < 3000; index += 1) {
      scratch.fill(index % 251);
      await first.update(scratch);
      await second.update(scratch.subarray(0, 10));
      scratch.fill(0); // the digester copied what it needed
    }
    const reference = createHash('sha256');
    const referenceSecond = createHash('sha256');
    for (let index = 0; index < 3000; index += 1) {
      reference.update(Buffer.alloc(1000, index % 251));
      referenceSecond.update(Buffer.alloc(10, index % 251));
    }
    expect(await first.digest()).toBe(`sha256:${reference.digest('hex')}`);
    expect(await second.digest()).toBe(`sha256:${referenceSecond.digest('hex')}`);
  });
});

describe('large blobs in verifyingStage and digestingStage', () => {
  it('verifies a large blob on the worker thread', async () => {
    const stage = verifyingStage({ expectedDigest: expected, expectedSize: size });
    expect(await drain(stage(chunksOf(data)))).toBe(size);
    expect(digestThreadRunning()).toBe(true);
  });

  it('fails before the end when a large blob has another digest', async () => {
    const corrupted = Buffer.from(data);
    corrupted[size - 5] = (corrupted[size - 5] ?? 0) ^ 0xff;
    const stage = verifyingStage({ expectedDigest: expected, expectedSize: size });
    await expect(drain(stage(chunksOf(corrupted)))).rejects.toMatchObject({
      code: 'ERR_GANTRY_DIGEST_MISMATCH',
    });
  });

  it('digests a stream of unknown size on the running worker', async () => {
    let result: { digest: Digest; size: number } | undefined;
    await drain(digestingStage((value) => (result = value))(chunksOf(data)));
    expect(result).toEqual({ digest: expected, size });
  });
});
