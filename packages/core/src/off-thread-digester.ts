import { type Digest, type DigestAlgorithm, Digester, digestAlgorithm } from './digest.js';
import { ErrorCodes, GantryError } from './errors.js';
import { loadKoffi } from './koffi.js';

/**
 * SHA-256 of OpenSSL (the `SHA256_Update` family: Node.js's own, which its executable exports, else the
 * system's `libcrypto.so.3`), called through koffi's asynchronous calls, which run on libuv's thread
 * pool: hashing a blob there leaves this thread free for the rest of the copy. One update at a time runs
 * per digest, in order.
 */
interface PoolSha256 {
  /** A fresh SHA-256 state (OpenSSL's `SHA256_CTX`, kept in a buffer of ours). */
  init(): Buffer;
  /** Hashes `bytes` into `context` on the thread pool. */
  update(context: Buffer, bytes: Uint8Array, done: (error: unknown) => void): void;
  /** The digest of `context` (32 bytes); on this thread, it is short. */
  final(context: Buffer): Buffer;
}

type KoffiFunction = ((...args: unknown[]) => unknown) & {
  async: (...args: unknown[]) => void;
};

interface KoffiModule {
  load(path: string | null): { func(signature: string): KoffiFunction };
}

/** `sizeof(SHA256_CTX)` is 112 bytes; room to spare. */
const contextSize = 256;

/**
 * Where the functions are looked for, in order: the process itself (null: Node.js links OpenSSL in and
 * exports its symbols for addons, so nothing more is loaded), then the system's OpenSSL 3.
 */
const libraryNames: Array<string | null> = [null, 'libcrypto.so.3'];

let loaded: PoolSha256 | null | undefined;

function load(): PoolSha256 | null {
  const koffi = loadKoffi() as KoffiModule | null;
  if (koffi === null) return null;
  for (const name of libraryNames) {
    let library: ReturnType<KoffiModule['load']>;
    try {
      library = koffi.load(name);
    } catch {
      continue;
    }
    try {
      const init = library.func('int SHA256_Init(void *context)');
      const update = library.func('int SHA256_Update(void *context, const void *data, size_t length)');
      const final = library.func('int SHA256_Final(void *digest, void *context)');
      const engine: PoolSha256 = {
        init() {
          const context = Buffer.alloc(contextSize);
          if (init(context) !== 1) throw new Error('SHA256_Init failed');
          return context;
        },
        update(context, bytes, done) {
          update.async(context, bytes, bytes.byteLength, (error: unknown, result: number) => {
            done(error ?? (result === 1 ? undefined : new Error('SHA256_Update failed')));
          });
        },
        final(context) {
          const digest = Buffer.alloc(32);
          if (final(digest, context) !== 1) throw new Error('SHA256_Final failed');
          return digest;
        },
      };
      // The library must agree with Node's own SHA-256 (a known vector) before it is trusted.
      const context = engine.init();
      if (update(context, Buffer.from('abc'), 3) !== 1) continue;
      const check = engine.final(context).toString('hex');
      if (check !== 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad') continue;
      return engine;
    } catch {
      // Not OpenSSL's SHA-256 API: try the next name.
    }
  }
  return null;
}

/**
 * SHA-256 on the thread pool when koffi and the system's OpenSSL load (once per process), else null.
 * `GANTRY_OFF_THREAD_DIGEST=off` makes it null (every digest is then computed on this thread).
 */
function poolSha256(): PoolSha256 | null {
  if (process.env.GANTRY_OFF_THREAD_DIGEST === 'off') return null;
  if (loaded === undefined) loaded = load();
  return loaded;
}

/** Whether SHA-256 digests are computed off this thread (`OffThreadDigester`). */
export function offThreadDigestAvailable(): boolean {
  return poolSha256() !== null;
}

/** Bytes handed to an `OffThreadDigester` and not yet hashed, above which `update` asks to wait. */
export const defaultPendingLimit = 2 * 1024 * 1024;

/**
 * Chunks shorter than this are copied together into batches of up to `smallBatchBytes` before they are
 * hashed: each hashing call on the thread pool costs tens of microseconds of this thread's time, which a
 * stream cut into tiny pieces (a tar parsed from one-byte reads) would pay per piece.
 */
const smallChunkBytes = 16 * 1024;
const smallBatchBytes = 128 * 1024;

/**
 * An incremental digest computed off this thread where it can be (SHA-256 with the system's OpenSSL,
 * see `offThreadDigestAvailable`), else on it (`Digester`).
 *
 * `update` takes a chunk and returns at once; the chunk is hashed later, in order, so its bytes must not
 * change until `digest()` resolved (a stream's chunks belong to their reader once passed on, and are never
 * written again). When more than `pendingLimit` bytes wait to be hashed, `update` returns a promise: the
 * caller awaits it before handing over more, which bounds the memory kept alive by the digest.
 */
export class OffThreadDigester {
  readonly algorithm: DigestAlgorithm;
  readonly #engine: PoolSha256 | null;
  readonly #onThread: Digester | undefined;
  readonly #context: Buffer | undefined;
  readonly #queue: Uint8Array[] = [];
  /** `update`'s `hashed` of each chunk in `#queue` (same index), when given. */
  readonly #hashed: Array<(() => void) | undefined> = [];
  #queueHead = 0;
  #running = false;
  #pendingBytes = 0;
  #byteCount = 0;
  #failure: unknown;
  #drained: Array<() => void> = [];
  #roomWaiters: Array<() => void> = [];
  /** Small chunks copied together, not yet handed to the thread pool (`smallChunkBytes`). */
  #batch: Buffer | undefined;
  #batchLength = 0;
  #poolCalls = 0;

  constructor(
    algorithm: DigestAlgorithm = 'sha256',
    readonly pendingLimit = defaultPendingLimit,
  ) {
    this.algorithm = algorithm;
    this.#engine = algorithm === 'sha256' ? poolSha256() : null;
    if (this.#engine) this.#context = this.#engine.init();
    else this.#onThread = new Digester(algorithm);
  }

  /** Bytes handed over so far. */
  get size(): number {
    return this.#byteCount;
  }

  /** Hashing calls made on the thread pool so far. */
  get poolCalls(): number {
    return this.#poolCalls;
  }

  /**
   * Adds `chunk` to the digest. Returns a promise when the caller should wait (too many bytes are
   * waiting to be hashed) before the next update; it resolves once there is room (or the digest failed:
   * `digest()` then rejects). `hashed`, when given, is called once nothing reads `chunk` any more (it was
   * hashed or copied, or the digest failed).
   */
  update(chunk: Uint8Array, hashed?: () => void): Promise<void> | undefined {
    this.#byteCount += chunk.byteLength;
    if (this.#onThread) {
      this.#onThread.update(chunk);
      hashed?.();
      return undefined;
    }
    if (chunk.byteLength === 0 || this.#failure !== undefined) {
      hashed?.();
      return undefined;
    }
    if (chunk.byteLength < smallChunkBytes) {
      const wait = this.#batchLength + chunk.byteLength > smallBatchBytes ? this.#enqueueBatch() : undefined;
      this.#batch ??= Buffer.allocUnsafe(smallBatchBytes);
      this.#batch.set(chunk, this.#batchLength);
      this.#batchLength += chunk.byteLength;
      hashed?.();
      return wait;
    }
    const wait = this.#enqueueBatch();
    return this.#enqueue(chunk, hashed) ?? wait;
  }

  /** Hands the small chunks copied so far to the thread pool, ahead of anything later. */
  #enqueueBatch(): Promise<void> | undefined {
    if (this.#batch === undefined || this.#batchLength === 0) return undefined;
    const batch = this.#batch.subarray(0, this.#batchLength);
    this.#batch = undefined;
    this.#batchLength = 0;
    return this.#enqueue(batch);
  }

  #enqueue(chunk: Uint8Array, hashed?: () => void): Promise<void> | undefined {
    this.#queue.push(chunk);
    this.#hashed.push(hashed);
    this.#pendingBytes += chunk.byteLength;
    if (!this.#running) this.#next();
    if (this.#pendingBytes <= this.pendingLimit) return undefined;
    return new Promise((resolve) => {
      this.#roomWaiters.push(resolve);
    });
  }

  /** The digest of every byte handed over, once they are hashed. Call once, after the last update. */
  async digest(): Promise<Digest> {
    if (this.#onThread) return this.#onThread.digest();
    if (this.#failure === undefined) void this.#enqueueBatch();
    if (this.#running) {
      await new Promise<void>((resolve) => {
        this.#drained.push(resolve);
      });
    }
    if (this.#failure !== undefined) throw this.#failure;
    return `${this.algorithm}:${this.#engine!.final(this.#context!).toString('hex')}` as Digest;
  }

  #next(): void {
    const chunk = this.#queue[this.#queueHead];
    if (chunk === undefined || this.#failure !== undefined) {
      this.#running = false;
      // Chunks dropped after a failure are read no more either.
      const dropped = this.#hashed.slice(this.#queueHead);
      this.#queue.length = 0;
      this.#hashed.length = 0;
      this.#queueHead = 0;
      for (const hashed of dropped) hashed?.();
      this.#wake(this.#drained);
      this.#wake(this.#roomWaiters);
      return;
    }
    const hashed = this.#hashed[this.#queueHead];
    this.#queue[this.#queueHead] = undefined as unknown as Uint8Array;
    this.#hashed[this.#queueHead] = undefined;
    this.#queueHead += 1;
    if (this.#queueHead > 1024) {
      this.#queue.splice(0, this.#queueHead);
      this.#hashed.splice(0, this.#queueHead);
      this.#queueHead = 0;
    }
    this.#running = true;
    this.#poolCalls += 1;
    // `chunk` stays referenced by this closure until the call returned.
    this.#engine!.update(this.#context!, chunk, (error) => {
      hashed?.();
      this.#pendingBytes -= chunk.byteLength;
      if (error !== undefined && this.#failure === undefined) this.#failure = error;
      if (this.#pendingBytes <= this.pendingLimit) this.#wake(this.#roomWaiters);
      this.#next();
    });
  }

  #wake(waiters: Array<() => void>): void {
    if (waiters.length === 0) return;
    const woken = waiters.splice(0);
    for (const wake of woken) wake();
  }
}

/**
 * Adjacent views of one buffer are handed to the thread pool together, up to this many bytes: a
 * decompressor pushes its output as successive views of one large buffer (node:zlib's `chunkSize`), so a
 * verified decompressed layer then costs one pool call per output buffer, not one per view.
 */
const mergedViewBytes = 1024 * 1024;

/** Options of `offThreadVerifyingStage`. */
export interface OffThreadVerifyOptions {
  /** The digest the bytes must have. */
  expectedDigest: Digest;
  /** Names the content in error messages, e.g. `layer sha256:…`. */
  description?: string;
  /**
   * Told of each chunk before it is passed on (`start`) and, once its bytes were hashed, of the run of
   * adjacent chunks it was hashed in (`end`, with how many chunks the run holds): for chunks whose
   * memory is reused once every reader is done with it (`holdLentView`).
   */
  hold?: {
    start(chunk: Uint8Array): void;
    end(run: Uint8Array, views: number): void;
  };
}

/**
 * `verifyingStage` (without a size) hashing off this thread: the bytes pass through while an
 * `OffThreadDigester` hashes them, and `ERR_GANTRY_DIGEST_MISMATCH` is thrown once the source ended and
 * before this stream ends, so a consumer that commits only on a clean end never commits wrong content.
 *
 * Only for sources whose chunks are never written to again once passed on (e.g. a decompressor's
 * output, in fresh buffers): a chunk is hashed after it was handed to the consumer. At most
 * `defaultPendingLimit` bytes wait to be hashed; the stage waits for the digest when more do.
 */
export function offThreadVerifyingStage(
  options: OffThreadVerifyOptions,
): (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Uint8Array, void, undefined> {
  const description = options.description ?? `blob ${options.expectedDigest}`;
  return async function* verifyOffThread(source) {
    const digester = new OffThreadDigester(digestAlgorithm(options.expectedDigest));
    const { hold } = options;
    // Views adjacent in one buffer, not handed over yet (as `runViews` chunks).
    let run: Uint8Array | undefined;
    let runViews = 0;
    // With `hold`, the run's chunks are let go once its bytes are hashed.
    const handOver = (bytes: Uint8Array, views: number): Promise<void> | undefined =>
      digester.update(bytes, hold ? () => hold.end(bytes, views) : undefined);
    for await (const chunk of source) {
      hold?.start(chunk);
      if (
        run !== undefined &&
        run.buffer === chunk.buffer &&
        run.byteOffset + run.byteLength === chunk.byteOffset &&
        run.byteLength + chunk.byteLength <= mergedViewBytes
      ) {
        run = new Uint8Array(run.buffer, run.byteOffset, run.byteLength + chunk.byteLength);
        runViews += 1;
      } else {
        if (run !== undefined) await handOver(run, runViews);
        run = chunk;
        runViews = 1;
      }
      yield chunk;
    }
    if (run !== undefined) await handOver(run, runViews);
    const actual = await digester.digest();
    if (actual !== options.expectedDigest) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `${description}: digest mismatch: expected ${options.expectedDigest}, got ${actual}`,
      );
    }
  };
}
