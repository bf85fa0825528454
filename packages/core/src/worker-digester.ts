import { Worker } from 'node:worker_threads';
import type { Digest, DigestAlgorithm } from './digest.js';
import { ErrorCodes, GantryError } from './errors.js';

/**
 * Digests computed on one dedicated worker thread, fed through shared memory: `update` copies the chunk
 * into a ring of shared bytes and publishes where it lies with an `Atomics.store` (the worker, when it
 * sleeps, is woken with `Atomics.notify`); the worker hashes the ring's bytes with node:crypto in the
 * order they were published. No message, promise or thread-pool hand-off per chunk: the calling thread
 * pays a `memcpy` of the chunk (a few µs per 128 KiB, about a third of what hashing it costs) and a few
 * shared-memory stores. The chunk may be reused as soon as `update` returns. A finished digest comes
 * back as one message.
 *
 * When the ring is full (the worker lags, or has not started yet) `update` waits on this thread
 * (`Atomics.wait`) until the worker freed room: the ring holds ~20 ms of a pull's bytes, and the worker
 * hashes faster than a copy produces them.
 */

/** Bytes of the shared ring the chunks are copied into. */
const ringBytes = 4 * 1024 * 1024;
/** The longest piece of a chunk published at once (a longer chunk is published in pieces). */
const longestPiece = ringBytes / 4;
/**
 * Bytes published before a sleeping worker is woken (a finish wakes it at once): the worker hashes
 * faster than a copy brings bytes, so waking it for every chunk would make a futex wake-up and two
 * context switches per chunk.
 */
const wakeAfterBytes = 1024 * 1024;
/** Entries of the descriptor ring (a power of two); each is four 32-bit integers. */
const descriptorSlots = 1024;

// The control words (Int32Array indices).
/** Descriptors published (wraps at 2^32). */
const head = 0;
/** Descriptors the worker is done with (wraps at 2^32). */
const tail = 1;
/** 1 while the worker sleeps (or is about to) waiting for `head` to move. */
const sleeping = 2;
/** 0 while the worker starts, then `ready`, or `failed`. */
const state = 3;
const ready = 1;
const failed = 2;

// Operations of a descriptor: [operation, digest id, a, b].
/** Start a digest: `a` is the algorithm's index in `algorithms`. */
const opStart = 1;
/** Hash `b` bytes of the ring from offset `a`. */
const opUpdate = 2;
/** Finish the digest and post `[id, hex]` back. */
const opFinish = 3;
/** Forget the digest. */
const opDiscard = 4;

const algorithms: readonly DigestAlgorithm[] = ['sha256', 'sha384', 'sha512'];

/**
 * What the worker runs, evaluated (no file of its own to find once bundled; built-in modules through
 * `process.getBuiltinModule`, which the bundler leaves alone).
 */
const workerSource = `
'use strict';
let words;
try {
  const { workerData, parentPort } = process.getBuiltinModule('node:worker_threads');
  const { createHash } = process.getBuiltinModule('node:crypto');
  const { control, descriptors, ring, algorithms, slots } = workerData;
  words = new Int32Array(control);
  const entries = new Int32Array(descriptors);
  const bytes = new Uint8Array(ring);
  const hashes = new Map();
  let done = 0;
  Atomics.store(words, ${state}, ${ready});
  Atomics.notify(words, ${state});
  for (;;) {
    const published = Atomics.load(words, ${head});
    if (published === done) {
      Atomics.store(words, ${sleeping}, 1);
      if (Atomics.load(words, ${head}) === done) Atomics.wait(words, ${head}, done);
      Atomics.store(words, ${sleeping}, 0);
      continue;
    }
    while (done !== published) {
      const at = (done & (slots - 1)) * 4;
      const operation = entries[at];
      const id = entries[at + 1];
      if (operation === ${opUpdate}) {
        hashes.get(id).update(bytes.subarray(entries[at + 2], entries[at + 2] + entries[at + 3]));
      } else if (operation === ${opStart}) {
        hashes.set(id, createHash(algorithms[entries[at + 2]]));
      } else if (operation === ${opFinish}) {
        const hex = hashes.get(id).digest('hex');
        hashes.delete(id);
        parentPort.postMessage([id, hex]);
      } else if (operation === ${opDiscard}) {
        hashes.delete(id);
      } else {
        throw new Error('unknown operation ' + operation);
      }
      done = (done + 1) | 0;
      Atomics.store(words, ${tail}, done);
      Atomics.notify(words, ${tail});
    }
  }
} catch (error) {
  if (words !== undefined) {
    Atomics.store(words, ${state}, ${failed});
    Atomics.notify(words, ${tail});
  }
  throw error;
}
`;

/** How long `update` waits at most for the worker to free room before it gives up. */
const stalledWorkerMs = 60_000;

function workerFailure(reason: string, cause?: unknown): GantryError {
  return new GantryError(ErrorCodes.Internal, `the digest worker thread failed: ${reason}`, {
    cause,
    // A retry of the blob hashes on this thread (the worker is not used again).
    retryable: true,
  });
}

/** The worker and its rings; the process has one (`workerDigestFor`), tests make their own. */
export class DigestWorker {
  readonly #words = new Int32Array(new SharedArrayBuffer(16));
  readonly #entries = new Int32Array(new SharedArrayBuffer(descriptorSlots * 16));
  readonly #ring = new Uint8Array(new SharedArrayBuffer(ringBytes));
  /** The ring's byte position (monotonic) after each descriptor, by descriptor slot. */
  readonly #endsAfter = new Float64Array(descriptorSlots);
  readonly #worker: Worker;
  /** Descriptors published (monotonic). */
  #published = 0;
  /** Bytes copied into the ring (monotonic). */
  #written = 0;
  /** Bytes published since the worker was last woken. */
  #unannounced = 0;
  #nextId = 1;
  readonly #finishing = new Map<number, { resolve: (hex: string) => void; reject: (error: Error) => void }>();
  #failure: GantryError | undefined;

  constructor() {
    this.#worker = new Worker(workerSource, {
      eval: true,
      execArgv: [],
      workerData: {
        control: this.#words.buffer,
        descriptors: this.#entries.buffer,
        ring: this.#ring.buffer,
        algorithms,
        slots: descriptorSlots,
      },
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 8 },
      stdout: false,
      stderr: false,
    });
    this.#worker.on('message', ([id, hex]: [number, string]) => {
      const finishing = this.#finishing.get(id);
      this.#finishing.delete(id);
      if (this.#finishing.size === 0) this.#worker.unref();
      finishing?.resolve(hex);
    });
    this.#worker.on('error', (error) => this.#fail(workerFailure(error.message, error)));
    this.#worker.on('exit', (code) => this.#fail(workerFailure(`it exited (code ${code})`)));
    // Idle, it keeps nothing alive: only a digest being finished does (see `finish`).
    this.#worker.unref();
  }

  /** Set once the worker failed or exited; nothing more is hashed on it. */
  get failure(): GantryError | undefined {
    return (
      this.#failure ?? (Atomics.load(this.#words, state) === failed ? workerFailure('it stopped') : undefined)
    );
  }

  /** Stops the worker (tests). Digests in progress fail. */
  async terminate(): Promise<void> {
    await this.#worker.terminate();
  }

  /** A new digest of `algorithm` on the worker. */
  digest(algorithm: DigestAlgorithm): WorkerDigest {
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0x7fffffff ? 1 : this.#nextId + 1;
    this.#publish(opStart, id, algorithms.indexOf(algorithm), 0);
    return new WorkerDigest(this, id, algorithm);
  }

  #fail(error: GantryError): void {
    this.#failure ??= error;
    for (const finishing of this.#finishing.values()) finishing.reject(this.#failure);
    this.#finishing.clear();
    if (digestWorkerInstance === this) digestWorkerUnavailable = true;
  }

  /** Copies `chunk` into the ring and has the worker hash it into digest `id`. */
  update(id: number, chunk: Uint8Array): void {
    let offset = 0;
    while (offset < chunk.byteLength) {
      const at = this.#written % ringBytes;
      const length = Math.min(chunk.byteLength - offset, ringBytes - at, longestPiece);
      this.#waitForRoom(length);
      this.#ring.set(chunk.subarray(offset, offset + length), at);
      this.#written += length;
      this.#publish(opUpdate, id, at, length);
      offset += length;
    }
  }

  /** The digest `id` of all the bytes given, once the worker hashed them. */
  finish(id: number): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      try {
        this.#publish(opFinish, id, 0, 0);
      } catch (error) {
        reject(error);
        return;
      }
      // Until the answer comes, the worker keeps the process alive (the copy waits for it).
      if (this.#finishing.size === 0) this.#worker.ref();
      this.#finishing.set(id, { resolve, reject });
    });
  }

  /** Forgets digest `id` (its bytes are not needed any more). */
  discard(id: number): void {
    if (this.failure === undefined) this.#publish(opDiscard, id, 0, 0);
  }

  /** Descriptors published and not yet done by the worker. */
  #pending(): number {
    return ((this.#published | 0) - Atomics.load(this.#words, tail)) | 0;
  }

  /** Waits until a descriptor slot and `bytes` of the ring are free. */
  #waitForRoom(bytes: number): void {
    let waitedMs = 0;
    for (;;) {
      const failure = this.failure;
      if (failure !== undefined) throw failure;
      const pending = this.#pending();
      if (pending < descriptorSlots - 1) {
        const done = this.#published - pending;
        const consumed = done === 0 ? 0 : this.#endsAfter[(done - 1) % descriptorSlots]!;
        if (ringBytes - (this.#written - consumed) >= bytes) return;
      }
      if (waitedMs >= stalledWorkerMs) throw workerFailure(`it did not hash for ${stalledWorkerMs / 1000} s`);
      this.#wake();
      // The worker notifies `tail` after every descriptor (and when it fails).
      Atomics.wait(this.#words, tail, Atomics.load(this.#words, tail), 100);
      waitedMs += 100;
    }
  }

  #publish(operation: number, id: number, a: number, b: number): void {
    if (operation !== opUpdate) this.#waitForRoom(0);
    const slot = this.#published % descriptorSlots;
    const at = slot * 4;
    this.#entries[at] = operation;
    this.#entries[at + 1] = id;
    this.#entries[at + 2] = a;
    this.#entries[at + 3] = b;
    this.#endsAfter[slot] = this.#written;
    this.#published += 1;
    Atomics.store(this.#words, head, this.#published | 0);
    this.#unannounced += b;
    if (operation === opFinish || this.#unannounced >= wakeAfterBytes) this.#wake();
  }

  /** Wakes the worker if it sleeps. */
  #wake(): void {
    this.#unannounced = 0;
    if (Atomics.load(this.#words, sleeping) === 1) Atomics.notify(this.#words, head);
  }
}

/** One digest being computed on a `DigestWorker`. */
export class WorkerDigest {
  #ended = false;

  constructor(
    private readonly worker: DigestWorker,
    private readonly id: number,
    readonly algorithm: DigestAlgorithm,
  ) {}

  /** Adds `chunk`'s bytes (copied: the chunk may be reused once this returns). Throws when the worker failed. */
  update(chunk: Uint8Array): void {
    if (this.#ended) throw new GantryError(ErrorCodes.Internal, 'digest already finished');
    this.worker.update(this.id, chunk);
  }

  /** The digest of all the bytes; call once. */
  async digest(): Promise<Digest> {
    if (this.#ended) throw new GantryError(ErrorCodes.Internal, 'digest already finished');
    this.#ended = true;
    return `${this.algorithm}:${await this.worker.finish(this.id)}` as Digest;
  }

  /** Drops the digest without finishing it (its stream failed); nothing happens once it ended. */
  discard(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.worker.discard(this.id);
  }
}

let digestWorkerInstance: DigestWorker | undefined;
let digestWorkerUnavailable = false;

/** Blobs at least this long (known size) are hashed on the worker (`workerDigestFor`). */
export const workerDigestMinimumBytes = 4 * 1024 * 1024;

/**
 * A digest of `algorithm` on the process's digest worker (started on first use) for a blob of
 * `expectedSize` bytes (-1: unknown), or undefined when it is hashed on this thread instead. Only with
 * `GANTRY_DIGEST_WORKER=on` (blobs of known size, `workerDigestMinimumBytes` or more) or `=always` (every
 * blob): by default digests stay on this thread. Measured on a loaded 2-core machine, the worker took
 * ~0.08 s of a 256 MiB pull's main thread but added ~0.25 s of CPU and ~13 MiB (its start-up, the copy
 * into the ring): no wall-time gain could be shown there (docs/performance-notes.md). Never after the
 * worker failed.
 */
export function workerDigestFor(algorithm: DigestAlgorithm, expectedSize: number): WorkerDigest | undefined {
  const setting = process.env.GANTRY_DIGEST_WORKER;
  if ((setting !== 'on' && setting !== 'always') || digestWorkerUnavailable) return undefined;
  if (setting === 'on' && expectedSize < workerDigestMinimumBytes) return undefined;
  try {
    digestWorkerInstance ??= new DigestWorker();
    return digestWorkerInstance.digest(algorithm);
  } catch {
    // No worker threads here (or it failed before): hashed on this thread.
    digestWorkerUnavailable = true;
    return undefined;
  }
}
