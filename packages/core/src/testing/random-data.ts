import { createCipheriv, createHash } from 'node:crypto';

const chunkSize = 64 * 1024;

/**
 * Deterministic pseudo-random bytes: the AES-256-CTR keystream under key `sha256("gantry-fixture:" + seed)`
 * with a zero counter block (a counter-mode generator like sha256-in-counter-mode, but fast enough for
 * GiB-sized benchmark files). Yields chunks of at most 64 KiB, so memory stays bounded for any `size`.
 * The same seed always gives the same bytes, and a shorter size gives a prefix of a longer one.
 */
export async function* seededRandomBytes(
  seed: string,
  size: number,
): AsyncGenerator<Uint8Array, void, undefined> {
  if (!Number.isSafeInteger(size) || size < 0)
    throw new RangeError(`random size must be a non-negative integer, got ${size}`);
  const key = createHash('sha256').update(`gantry-fixture:${seed}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(chunkSize);
  let remaining = size;
  while (remaining > 0) {
    const length = Math.min(remaining, chunkSize);
    yield cipher.update(length === chunkSize ? zeros : zeros.subarray(0, length));
    remaining -= length;
  }
}
