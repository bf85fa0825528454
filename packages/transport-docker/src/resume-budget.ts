/**
 * The memory streamed uploads keep for resuming, bounded across the uploads in flight.
 *
 * A streamed upload keeps the bytes it sent most recently (the pieces already read, no copies), so that
 * a dropped connection continues from the offset the registry reports instead of starting over, and
 * its first bytes until the registry answers (a refusal of streaming then loses nothing). Each upload
 * keeping a fixed window would make memory grow with the number of blobs copied at once; here the
 * uploads in flight share one budget: each may keep `min(perUploadBytes, totalBytes / uploads in
 * flight)`, recomputed as uploads start and end. One upload alone keeps `perUploadBytes`.
 */

/** What one upload may keep, as long as it is registered. */
export interface ResumeWindow {
  /** The bytes this upload may keep right now (its share of the budget). */
  bytes(): number;
  /** Gives the share back: the other uploads' shares grow. Idempotent. */
  release(): void;
}

export class UploadResumeBudget {
  #totalBytes = 0;
  #perUploadBytes = 0;
  #uploads = 0;

  constructor(totalBytes: number, perUploadBytes: number) {
    this.resize(totalBytes, perUploadBytes);
  }

  /** The bytes all uploads in flight may keep together. */
  get totalBytes(): number {
    return this.#totalBytes;
  }

  /** The most one upload may keep, however few are in flight. */
  get perUploadBytes(): number {
    return this.#perUploadBytes;
  }

  /** Changes the sizes; uploads in flight get their new share from their next `bytes()` call. */
  resize(totalBytes: number, perUploadBytes: number): void {
    if (!(totalBytes > 0) || !(perUploadBytes > 0)) {
      throw new RangeError('an upload resume budget needs positive sizes');
    }
    this.#totalBytes = totalBytes;
    this.#perUploadBytes = perUploadBytes;
  }

  /** Uploads registered and not released. */
  get uploads(): number {
    return this.#uploads;
  }

  /** The share of each upload while `uploads` are in flight. */
  shareOf(uploads: number): number {
    return Math.min(this.perUploadBytes, Math.floor(this.totalBytes / Math.max(1, uploads)));
  }

  /** Registers an upload for as long as it streams. */
  join(): ResumeWindow {
    this.#uploads += 1;
    let released = false;
    return {
      bytes: () => this.shareOf(this.#uploads),
      release: () => {
        if (released) return;
        released = true;
        this.#uploads -= 1;
      },
    };
  }
}

/**
 * The budget the registry destinations of this process share: 8 MiB in all, so also 8 MiB for an upload
 * alone (the bytes in flight when a connection drops are those in socket buffers on both sides and in
 * proxies, usually a few MiB). With the default 6 blobs at once, each upload keeps about 1.3 MiB; a drop
 * that loses more than that is not resumed, and the blob is uploaded again (`--retry-times`).
 *
 * The budget is small on purpose: kept pieces outlive young-generation collections, so V8 frees them
 * only at a full collection, and what the windows hold shows in the peak memory several times over.
 */
export const sharedUploadResumeBudget = new UploadResumeBudget(8 * 1024 * 1024, 8 * 1024 * 1024);
