/**
 * Which blobs open destinations of this process are using (written or reused, not yet committed), per
 * blob directory. Garbage collection (a destination closed without commit, an image deleted) never
 * deletes a blob another open destination uses, even though no `index.json` refers to it yet.
 *
 * Other processes are not visible here; for them, `commit` checks under the layout lock that every blob
 * of the image still exists, so a blob collected under a concurrent writer makes that commit fail
 * instead of recording a broken image.
 */
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import type { Digest } from '@gantry/core/transport';

const usageByDirectory = new Map<string, Map<Digest, number>>();
/** Blobs written whose bytes are still being flushed to disk before they get their names. */
const settlingByDirectory = new Map<string, Map<Digest, Promise<void>>>();

/** A key for a blob directory: its real path when it exists, else its absolute path. */
export async function blobDirectoryKey(blobDirectory: string): Promise<string> {
  try {
    return await realpath(blobDirectory);
  } catch {
    return path.resolve(blobDirectory);
  }
}

/** The blobs one destination uses in one blob directory. */
export class BlobUsage {
  readonly #key: string;
  readonly #digests = new Set<Digest>();
  #released = false;

  constructor(key: string) {
    this.#key = key;
  }

  /** Records that this destination uses `digest` (idempotent). */
  add(digest: Digest): void {
    if (this.#released || this.#digests.has(digest)) return;
    this.#digests.add(digest);
    let counts = usageByDirectory.get(this.#key);
    if (!counts) {
      counts = new Map();
      usageByDirectory.set(this.#key, counts);
    }
    counts.set(digest, (counts.get(digest) ?? 0) + 1);
  }

  /** True when another destination of this process uses `digest` in the same directory. */
  usedByOthers(digest: Digest): boolean {
    const count = usageByDirectory.get(this.#key)?.get(digest) ?? 0;
    return count - (this.#digests.has(digest) && !this.#released ? 1 : 0) > 0;
  }

  /**
   * Records that `digest` is being flushed to disk and will have its name when `settlement` resolves,
   * so that every destination of this process writing into the same directory can wait for it.
   */
  settling(digest: Digest, settlement: Promise<void>): void {
    let pending = settlingByDirectory.get(this.#key);
    if (!pending) {
      pending = new Map();
      settlingByDirectory.set(this.#key, pending);
    }
    pending.set(digest, settlement);
    const forget = (): void => {
      const current = settlingByDirectory.get(this.#key);
      if (current?.get(digest) !== settlement) return;
      current.delete(digest);
      if (current.size === 0) settlingByDirectory.delete(this.#key);
    };
    settlement.then(forget, forget);
  }

  /** The flush under way for `digest` in this directory (by any destination of this process), if any. */
  settlementOf(digest: Digest): Promise<void> | undefined {
    return settlingByDirectory.get(this.#key)?.get(digest);
  }

  /** Forgets every digest of this destination. Idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    const counts = usageByDirectory.get(this.#key);
    if (!counts) return;
    for (const digest of this.#digests) {
      const remaining = (counts.get(digest) ?? 0) - 1;
      if (remaining > 0) counts.set(digest, remaining);
      else counts.delete(digest);
    }
    if (counts.size === 0) usageByDirectory.delete(this.#key);
  }
}

/** True when any open destination of this process uses `digest` in the blob directory `key`. */
export function isBlobInUse(key: string, digest: Digest): boolean {
  return (usageByDirectory.get(key)?.get(digest) ?? 0) > 0;
}
