import { createHash, type Hash } from 'node:crypto';
import { ErrorCodes, GantryError } from './errors.js';

/**
 * A content digest in the OCI form `algorithm:encoded`, e.g. `sha256:e3b0c4…`.
 * Values of this type have been validated by `parseDigest` (or computed by Gantry).
 */
export type Digest = string & { readonly __digest?: never };

/** Supported digest algorithms and the length of their lowercase hex encoding. */
export const digestAlgorithms = { sha256: 64, sha384: 96, sha512: 128 } as const;
/** A digest algorithm Gantry computes and verifies: `sha256`, `sha384` or `sha512`. */
export type DigestAlgorithm = keyof typeof digestAlgorithms;

/** The algorithm used when Gantry computes a new digest. */
export const canonicalDigestAlgorithm: DigestAlgorithm = 'sha256';

const digestPattern = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;

/** Validates a digest string; throws `ERR_GANTRY_INVALID_DIGEST` naming what is wrong. */
export function parseDigest(value: string): Digest {
  const match = digestPattern.exec(value);
  if (!match)
    throw new GantryError(
      ErrorCodes.InvalidDigest,
      `invalid digest "${value}": invalid checksum digest format`,
    );
  const algorithm = match[1]!;
  const encoded = match[2]!;
  const length = (digestAlgorithms as Record<string, number>)[algorithm];
  if (length === undefined) {
    throw new GantryError(
      ErrorCodes.InvalidDigest,
      `invalid digest "${value}": unsupported digest algorithm`,
    );
  }
  if (encoded.length !== length || !/^[a-f0-9]+$/.test(encoded)) {
    throw new GantryError(
      ErrorCodes.InvalidDigest,
      `invalid digest "${value}": invalid checksum digest length`,
    );
  }
  return value as Digest;
}

/** True when `value` is a valid digest string. */
export function isDigest(value: string): value is Digest {
  try {
    parseDigest(value);
    return true;
  } catch {
    return false;
  }
}

/** The algorithm part of a valid digest. */
export function digestAlgorithm(digest: Digest): DigestAlgorithm {
  return digest.slice(0, digest.indexOf(':')) as DigestAlgorithm;
}

/** The hex part of a valid digest (what blob files are named after). */
export function digestHex(digest: Digest): string {
  return digest.slice(digest.indexOf(':') + 1);
}

/** Digest of a byte string, by default sha256. */
export function digestOf(
  bytes: Uint8Array | string,
  algorithm: DigestAlgorithm = canonicalDigestAlgorithm,
): Digest {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}` as Digest;
}

/** An incremental digester. */
export class Digester {
  readonly algorithm: DigestAlgorithm;
  private readonly hash: Hash;
  private byteCount = 0;

  constructor(algorithm: DigestAlgorithm = canonicalDigestAlgorithm) {
    this.algorithm = algorithm;
    this.hash = createHash(algorithm);
  }

  /** Adds bytes to the digest. */
  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.byteCount += chunk.byteLength;
  }

  /** Bytes seen so far. */
  get size(): number {
    return this.byteCount;
  }

  /** Finishes the digest; call once. */
  digest(): Digest {
    return `${this.algorithm}:${this.hash.digest('hex')}` as Digest;
  }
}

/** Options of {@link verifyingStage}. */
export interface VerifyOptions {
  /** The digest the bytes must have. */
  expectedDigest: Digest;
  /** The size the bytes must have; -1 or undefined when unknown. */
  expectedSize?: number;
  /** Names the content in error messages, e.g. `blob sha256:…`. */
  description?: string;
}

/**
 * A `stream/promises` pipeline stage that passes bytes through while hashing them, and throws
 * `ERR_GANTRY_SIZE_MISMATCH` as soon as more bytes than expected arrive, or at the end
 * `ERR_GANTRY_DIGEST_MISMATCH` / `ERR_GANTRY_SIZE_MISMATCH` when the content is not what was expected.
 * The error is thrown *before* the stream ends, so a consumer that commits only on a clean end never
 * commits wrong content.
 */
export function verifyingStage(
  options: VerifyOptions,
): (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Uint8Array, void, undefined> {
  const expectedSize = options.expectedSize ?? -1;
  const description = options.description ?? `blob ${options.expectedDigest}`;
  return async function* verify(source) {
    const digester = new Digester(digestAlgorithm(options.expectedDigest));
    for await (const chunk of source) {
      digester.update(chunk);
      if (expectedSize >= 0 && digester.size > expectedSize) {
        throw new GantryError(
          ErrorCodes.SizeMismatch,
          `${description}: size mismatch: expected ${expectedSize} bytes, got more`,
        );
      }
      yield chunk;
    }
    if (expectedSize >= 0 && digester.size !== expectedSize) {
      throw new GantryError(
        ErrorCodes.SizeMismatch,
        `${description}: size mismatch: expected ${expectedSize} bytes, got ${digester.size}`,
      );
    }
    const actual = digester.digest();
    if (actual !== options.expectedDigest) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `${description}: digest mismatch: expected ${options.expectedDigest}, got ${actual}`,
      );
    }
  };
}

/**
 * A pipeline stage that passes bytes through and reports their digest and size when the source ends
 * (via `onEnd`). Used by destinations and the copy pipeline to learn the digest of content that has no
 * known digest yet (e.g. a layer being compressed).
 */
export function digestingStage(
  onEnd: (result: { digest: Digest; size: number }) => void,
  algorithm: DigestAlgorithm = canonicalDigestAlgorithm,
): (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Uint8Array, void, undefined> {
  return async function* digesting(source) {
    const digester = new Digester(algorithm);
    for await (const chunk of source) {
      digester.update(chunk);
      yield chunk;
    }
    onEnd({ digest: digester.digest(), size: digester.size });
  };
}

/**
 * The pipeline stage a destination's `putBlob` puts between the incoming stream and its storage: it
 * reports the digest and size of what was written when the source ends (via `onEnd`).
 *
 * When `expectedDigest` is given, the bytes are only counted, not hashed again: by the contract, a caller
 * that names the digest guarantees that the stream fails before its end when the bytes do not match
 * it (the copy pipeline wraps every blob in `verifyingStage`), as containers/image does. When it is
 * undefined (e.g. a layer compressed on the way), the digest is computed here.
 */
export function blobWriteStage(
  expectedDigest: Digest | undefined,
  onEnd: (result: { digest: Digest; size: number }) => void,
): (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Uint8Array, void, undefined> {
  if (expectedDigest === undefined) return digestingStage(onEnd);
  return async function* counting(source) {
    let size = 0;
    for await (const chunk of source) {
      size += chunk.byteLength;
      yield chunk;
    }
    onEnd({ digest: expectedDigest, size });
  };
}
