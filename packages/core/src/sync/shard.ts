/**
 * `--shard i/n`: a deterministic partition of a sync's images into n parts, so that n runs (an
 * Indexed Job, a CI matrix) mirror one source together without talking to each other.
 *
 * An image belongs to shard `h mod n`, where h is the first 8 bytes (big-endian) of the SHA-256 of its
 * source name: `host/repository:tag` or `host/repository@digest` for registry images, the path below
 * the source directory for `dir` images. It depends on nothing else — not the order in which tags were
 * listed, not the other images, not the machine — so every run computes the same part for an image,
 * the parts are disjoint, and together they are complete. With uniformly distributed hashes the parts
 * are even up to the statistics of the names (see shard.test.ts).
 */
import { createHash } from 'node:crypto';
import { ErrorCodes, GantryError } from '../errors.js';

/** Shard `index` (0-based) of `count`. */
export interface SyncShard {
  index: number;
  count: number;
}

/** Parses `i/n` (0 ≤ i < n); throws `ERR_GANTRY_USAGE` naming the problem. */
export function parseShard(text: string): SyncShard {
  const match = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!match) {
    throw new GantryError(ErrorCodes.Usage, `invalid shard "${text}": expected INDEX/COUNT, e.g. 0/4`);
  }
  const index = Number(match[1]);
  const count = Number(match[2]);
  validateShard({ index, count });
  return { index, count };
}

/** Throws `ERR_GANTRY_USAGE` when the shard is impossible. */
export function validateShard(shard: SyncShard): void {
  if (!Number.isSafeInteger(shard.count) || shard.count < 1) {
    throw new GantryError(
      ErrorCodes.Usage,
      `invalid shard ${shard.index}/${shard.count}: COUNT must be at least 1`,
    );
  }
  if (!Number.isSafeInteger(shard.index) || shard.index < 0 || shard.index >= shard.count) {
    throw new GantryError(
      ErrorCodes.Usage,
      `invalid shard ${shard.index}/${shard.count}: INDEX must be between 0 and ${shard.count - 1}`,
    );
  }
}

/** The shard (0 … count-1) of an image with this source name. */
export function shardOf(sourceName: string, count: number): number {
  const hash = createHash('sha256').update(sourceName, 'utf8').digest();
  return Number(hash.readBigUInt64BE(0) % BigInt(count));
}
