/**
 * Hashing on a worker thread, for large blobs.
 *
 * A copy's main thread does everything else a blob needs (reading, decompressing, compressing,
 * writing, HTTP): hashing a large blob there (SHA-256 at ~1.5 GB/s) adds to that work, while the
 * machine's other cores idle. `ThreadDigester` gathers the bytes into 1 MiB batches and hashes them
 * on one shared worker thread instead; the main thread only copies them (an order of magnitude
 * cheaper). The worker starts on first use, is shared by every digester of the process, and does not
 * keep the process alive when idle.
 *
 * Memory is bounded: at most `maxBytesInFlight` bytes wait for the worker; `update` then returns a
 * promise that resolves when the worker has caught up.
 */
import { Worker } from 'node:worker_threads';
import type { Digest, DigestAlgorithm } from './digest.js';
import { ErrorCodes, GantryError } from './errors.js';

/** Streams at least this long (when their size is known) are hashed on the worker thread. */
export const threadDigestMinimumSize = 8 * 1024 * 1024;
const batchSize = 1024 * 1024;
const maxBytesInFlight = 16 * 1024 * 1024;

const workerSource = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (message) => {
  switch (message.type) {
    case 'start':
      hashes.set(message.id, createHash(message.algorithm));
      break;
    case 'update': {
      const hash = hashes.get(message.id);
      if (hash) hash.update(new Uint8Array(message.buffer, 0, message.length));
      parentPort.postMessage({ type: 'consumed', length: message.length });
      break;
    }
    case 'digest': {
      const hash = hashes.get(message.id);
      hashes.delete(message.id);
      parentPort.postMessage({ type: 'digest', id: message.id, hex: hash ? hash.digest('hex') : '' });
      break;
    }
    case 'discard':
      hashes.delete(message.id);
      break;
  }
});
`;

interface WorkerMessage {
  type: 'consumed' | 'digest';
  id?: number;
  length?: number;
  hex?: string;
}

/** The shared worker and its bookkeeping. */
class DigestThread {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pendingDigests = new Map<
    number,
    { resolve: (hex: string) => void; reject: (error: Error) => void }
  >();
  private readonly waitingForRoom: Array<() => void> = [];
  private active = 0;
  bytesInFlight = 0;
  failure: Error | undefined;

  constructor() {
    this.worker = new Worker(workerSource, { eval: true });
    this.worker.unref();
    this.worker.on('message', (message: WorkerMessage) => {
      if (message.type === 'consumed') {
        this.bytesInFlight -= message.length ?? 0;
        while (this.bytesInFlight < maxBytesInFlight && this.waitingForRoom.length > 0)
          this.waitingForRoom.shift()!();
      } else if (message.type === 'digest' && message.id !== undefined) {
        const pending = this.pendingDigests.get(message.id);
        this.pendingDigests.delete(message.id);
        pending?.resolve(message.hex ?? '');
      }
    });
    const fail = (error: Error): void => {
      this.failure ??= new GantryError(ErrorCodes.Internal, `digest worker thread failed: ${error.message}`, {
        cause: error,
      });
      for (const pending of this.pendingDigests.values()) pending.reject(this.failure);
      this.pendingDigests.clear();
      for (const wake of this.waitingForRoom.splice(0)) wake();
      if (sharedThread === this) sharedThread = undefined;
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
  }

  /** Keeps the process alive while a digest is being computed, not otherwise. */
  private retain(): void {
    if (this.active++ === 0) this.worker.ref();
  }

  private release(): void {
    if (--this.active === 0) this.worker.unref();
  }

  start(algorithm: DigestAlgorithm): number {
    const id = this.nextId++;
    this.retain();
    this.worker.postMessage({ type: 'start', id, algorithm });
    return id;
  }

  update(id: number, buffer: ArrayBuffer, length: number): void {
    this.bytesInFlight += length;
    this.worker.postMessage({ type: 'update', id, buffer, length }, [buffer]);
  }

  /** Resolves once fewer than `maxBytesInFlight` bytes wait for the worker. */
  roomAvailable(): Promise<void> | undefined {
    if (this.bytesInFlight < maxBytesInFlight || this.failure) return undefined;
    return new Promise((resolve) => this.waitingForRoom.push(resolve));
  }

  digest(id: number): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      if (this.failure) {
        reject(this.failure);
        return;
      }
      this.pendingDigests.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'digest', id });
    }).finally(() => this.release());
  }

  discard(id: number): void {
    this.worker.postMessage({ type: 'discard', id });
    this.release();
  }
}

let sharedThread: DigestThread | undefined;

/** Whether the worker thread is already running (so using it costs no start-up). */
export function digestThreadRunning(): boolean {
  return sharedThread !== undefined;
}

/**
 * An incremental digest computed on the shared worker thread. Call `update` for every chunk in
 * order (awaiting the promise it may return), then `digest()` once, or `discard()` to give up.
 */
export class ThreadDigester {
  readonly algorithm: DigestAlgorithm;
  private readonly thread: DigestThread;
  private readonly id: number;
  private batch: Uint8Array | undefined;
  private batchLength = 0;
  private byteCount = 0;
  private finished = false;

  constructor(algorithm: DigestAlgorithm) {
    this.algorithm = algorithm;
    sharedThread ??= new DigestThread();
    this.thread = sharedThread;
    this.id = this.thread.start(algorithm);
  }

  /** Bytes seen so far. */
  get size(): number {
    return this.byteCount;
  }

  /** Adds `chunk` (copied; the caller keeps it). Returns a promise to await when the worker is behind. */
  update(chunk: Uint8Array): Promise<void> | undefined {
    this.byteCount += chunk.byteLength;
    let offset = 0;
    while (offset < chunk.byteLength) {
      this.batch ??= new Uint8Array(new ArrayBuffer(batchSize));
      const take = Math.min(batchSize - this.batchLength, chunk.byteLength - offset);
      this.batch.set(chunk.subarray(offset, offset + take), this.batchLength);
      this.batchLength += take;
      offset += take;
      if (this.batchLength === batchSize) this.flush();
    }
    return this.thread.roomAvailable();
  }

  private flush(): void {
    if (this.batch === undefined || this.batchLength === 0) return;
    this.thread.update(this.id, this.batch.buffer as ArrayBuffer, this.batchLength);
    this.batch = undefined;
    this.batchLength = 0;
  }

  /** The digest of everything added; call once. */
  async digest(): Promise<Digest> {
    this.finished = true;
    this.flush();
    const hex = await this.thread.digest(this.id);
    return `${this.algorithm}:${hex}` as Digest;
  }

  /** Gives up on this digest (the stream failed); idempotent, a no-op after `digest()`. */
  discard(): void {
    if (this.finished) return;
    this.finished = true;
    this.batch = undefined;
    this.thread.discard(this.id);
  }
}
