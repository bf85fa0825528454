/**
 * A blob being spooled to a temporary file that can be read while it is still being written: the
 * destination applies a layer whose parent is in the store from its spool as the blob arrives, instead of
 * waiting for the whole download.
 *
 * The writer (`write`) appends the blob's bytes as received (one write in flight, what arrived meanwhile
 * written next in one go) and counts only what the file holds. A reader (`read`) yields the file's bytes up to that count, waits for more, and
 * ends only once the writer has `finish`ed, which the destination calls after the blob's digest and size
 * were verified; when the writer `fail`s (a broken download, a digest mismatch), every reader throws its
 * error. So nothing read from a spool counts before its blob is verified.
 */
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';

/**
 * Bytes of a blob held while its previous write is in flight, past which its source waits. The chunks
 * held are socket reads that go back to the registry source's pool only once written, so this bounds
 * how far that pool grows (fresh memory, page faults): 4 MiB per blob kept ~12 MiB of read buffers out
 * for the three spooled blobs of a four-layer pull; 1 MiB keeps the peak ~7–12 MiB lower (see
 * docs/performance-notes.md).
 */
const maxBatchBytes = 1 << 20;
/** At most this many buffers per writev (Linux's IOV_MAX is 1024). */
const maxChunksPerWrite = 512;
const readChunkBytes = 1 << 20;

/** What the verified blob turned out to be. */
export interface SpooledBlobIdentity {
  digest: string;
  size: number;
}

export class GrowingSpool {
  /** Bytes in the file (written and completed). */
  private written = 0;
  private state: { done: SpooledBlobIdentity } | { failed: unknown } | undefined;
  private waiters: Array<() => void> = [];

  constructor(readonly path: string) {}

  /** A spool of a blob already complete and verified in the file at `path`. */
  static ofFile(path: string, blob: SpooledBlobIdentity): GrowingSpool {
    const spool = new GrowingSpool(path);
    spool.written = blob.size;
    spool.state = { done: blob };
    return spool;
  }

  /** Whether the writer failed (its error is what readers throw). */
  get failed(): boolean {
    return this.state !== undefined && 'failed' in this.state;
  }

  /**
   * Writes everything `source` yields to the file (created, mode 0600), one write in flight: chunks that
   * arrive meanwhile are written together next (up to `maxBatchBytes` held; past that the source waits).
   * The caller then calls `finish` or `fail`. `written`, when given, gets each chunk of `source` once
   * all of its bytes are in the file (nothing here reads it again).
   */
  async write(source: AsyncIterable<Uint8Array>, written?: (chunk: Uint8Array) => void): Promise<void> {
    const handle = await open(this.path, 'wx', 0o600);
    let batch: Uint8Array[] = [];
    let batchBytes = 0;
    let writing: Promise<void> = Promise.resolve();
    let busy = false;
    let failure: { error: unknown } | undefined;
    const startWrite = () => {
      const chunks = batch;
      batch = [];
      batchBytes = 0;
      busy = true;
      writing = this.append(handle, chunks).then(
        () => {
          busy = false;
          if (written !== undefined) for (const chunk of chunks) written(chunk);
        },
        (error: unknown) => {
          failure ??= { error };
          busy = false;
        },
      );
    };
    try {
      for await (const chunk of source) {
        batch.push(chunk);
        batchBytes += chunk.byteLength;
        if (busy && batchBytes >= maxBatchBytes) await writing;
        if (failure) throw failure.error;
        if (!busy) startWrite();
      }
      await writing;
      if (batchBytes > 0 && !failure) {
        startWrite();
        await writing;
      }
      if (failure) throw failure.error;
    } finally {
      await writing;
      await handle.close();
    }
  }

  private async append(handle: FileHandle, chunks: Uint8Array[]): Promise<void> {
    // One gathered write per batch, without first copying the chunks into one buffer (a fresh buffer
    // per batch costs more than the write itself: page faults on every new allocation).
    let pending = chunks;
    while (pending.length > 0) {
      const group = pending.length > maxChunksPerWrite ? pending.slice(0, maxChunksPerWrite) : pending;
      let { bytesWritten } = await handle.writev(group, this.written);
      this.written += bytesWritten;
      let done = 0;
      while (done < group.length && bytesWritten >= (group[done] as Uint8Array).byteLength) {
        bytesWritten -= (group[done] as Uint8Array).byteLength;
        done++;
      }
      const rest = pending.slice(done);
      // A short write ends inside a chunk: its remainder goes first next time.
      if (bytesWritten > 0) rest[0] = (rest[0] as Uint8Array).subarray(bytesWritten);
      pending = rest;
    }
    this.wake();
  }

  /** The blob is complete and verified: readers end after its last byte. */
  finish(blob: SpooledBlobIdentity): void {
    this.state ??= { done: blob };
    this.wake();
  }

  /** The verified blob's digest and size, once `finish`ed; throws the writer's error when it failed. */
  async completed(): Promise<SpooledBlobIdentity> {
    for (;;) {
      if (this.state !== undefined) {
        if ('failed' in this.state) throw this.state.failed;
        return this.state.done;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** The blob failed: readers throw `error`. */
  fail(error: unknown): void {
    this.state ??= { failed: error };
    this.wake();
  }

  private wake(): void {
    for (const resolve of this.waiters.splice(0)) resolve();
  }

  /**
   * The blob's bytes, as they arrive; ends when it is complete and verified, throws when it failed. Read
   * into `buffers` when given (each chunk is then the consumer's until it gives it back).
   */
  async *read(signal?: AbortSignal, buffers?: ReadBufferRecycler): AsyncGenerator<Buffer, void, undefined> {
    let handle: FileHandle | undefined;
    let position = 0;
    try {
      for (;;) {
        signal?.throwIfAborted();
        if (this.state !== undefined && 'failed' in this.state) throw this.state.failed;
        if (position < this.written) {
          handle ??= await open(this.path, 'r');
          const length = Math.min(readChunkBytes, this.written - position);
          const buffer = buffers?.take(length) ?? Buffer.allocUnsafe(length);
          const { bytesRead } = await handle.read(buffer, 0, length, position);
          if (bytesRead === 0) throw new Error(`${this.path}: the spooled blob is shorter than written`);
          position += bytesRead;
          yield buffer.subarray(0, bytesRead);
          continue;
        }
        if (this.state !== undefined) return; // done, and everything read
        await new Promise<void>((resolve) => {
          this.waiters.push(resolve);
          signal?.addEventListener('abort', () => resolve(), { once: true });
        });
      }
    } finally {
      await handle?.close();
    }
  }
}

/**
 * Read buffers of `readChunkBytes`, taken back once their reader is done with the chunk read into one
 * (`giveBack`) and read into again: no fresh memory (page faults on first touch, garbage until the next
 * collection) per 1 MiB read. A chunk never given back leaves its buffer to the garbage collector.
 */
export class ReadBufferRecycler {
  private readonly idle: Buffer[] = [];
  private readonly lent = new WeakMap<ArrayBufferLike, Buffer>();

  constructor(private readonly keep = 4) {}

  /** A buffer with room for `length` bytes (at most `readChunkBytes`), lent out. */
  take(length: number): Buffer {
    if (length > readChunkBytes) return Buffer.allocUnsafe(length);
    const buffer = this.idle.pop() ?? Buffer.allocUnsafeSlow(readChunkBytes);
    this.lent.set(buffer.buffer, buffer);
    return buffer;
  }

  /** Nothing reads `chunk` (a view of a buffer from `take`; anything else is ignored) any more. */
  giveBack(chunk: Uint8Array): void {
    const buffer = this.lent.get(chunk.buffer);
    if (buffer === undefined) return;
    this.lent.delete(chunk.buffer);
    if (this.idle.length < this.keep) this.idle.push(buffer);
  }
}
