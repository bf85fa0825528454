import { availableParallelism } from 'node:os';
import { abortError } from '../errors.js';

/**
 * A counting semaphore for CPU-bound compression: each holder is a layer being compressed (or
 * recompressed). Compressing is CPU-bound, so more layers at once than there are cores only adds
 * memory (each compressor has its buffers, blocks in flight and, for zstd, worker threads) without
 * finishing sooner. Waiters are served in arrival order.
 */
export class CompressionSlots {
  readonly #capacity: number;
  #held = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(capacity: number) {
    this.#capacity = Math.max(1, Math.floor(capacity));
  }

  /** How many slots there are. */
  get capacity(): number {
    return this.#capacity;
  }

  /** Slots in use now. */
  get held(): number {
    return this.#held;
  }

  /**
   * Waits for a slot; resolves to the function that gives it back (call it once). Rejects with the
   * Gantry abort error when `signal` fires while waiting.
   */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) throw abortError(signal);
    if (this.#held < this.#capacity) {
      this.#held += 1;
      return this.#releaser();
    }
    await new Promise<void>((resolve, reject) => {
      const grant = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const position = this.#waiting.indexOf(grant);
        if (position >= 0) this.#waiting.splice(position, 1);
        reject(abortError(signal!));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(grant);
    });
    // The slot was handed over by a release: `held` already counts it.
    return this.#releaser();
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next();
      else this.#held -= 1;
    };
  }
}

/**
 * The process-wide slots: one layer compressed at once per two cores. Each compressor already keeps two
 * or more cores busy (gzip: a block per core on the thread pool, `parallelGzipStage`; zstd: two worker
 * threads per stream) while this thread decompresses and hashes, so more layers at once only add memory:
 * measured on 2 cores, recompressing 8 × 64 MiB layers to a registry, two slots peaked at 180–215 MiB
 * RSS and one at 160–170 MiB, for the same CPU time.
 */
export const compressionSlots = new CompressionSlots(Math.max(1, Math.floor(availableParallelism() / 2)));
