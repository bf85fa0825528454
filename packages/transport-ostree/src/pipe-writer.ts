/**
 * Writes a stream of buffers to the write end of a blocking pipe with `write(2)` on libuv's thread
 * pool (`fs.write`), one write at a time, instead of through a non-blocking `net.Socket`.
 *
 * Why: `ostree commit --tree=tar=` reads its pipe 8 KiB at a time (libarchive's block size for a pipe).
 * Through a non-blocking socket, every read that makes room in a full pipe wakes this process's event
 * loop, which runs JavaScript to write the next 8 KiB: about 20,000 wake-ups of the main thread for a
 * copy of 112 MiB of layers. A blocking `write` on a pool thread waits for room inside the kernel, and
 * the main thread only hears when a whole buffer has been written.
 *
 * Small pieces (tar headers, small files, padding) are gathered into one write. Up to `aheadBytes` can
 * be queued behind the write in flight, so that the caller goes on decompressing and parsing while the
 * pipe drains; beyond that `write` waits. Buffers handed to `write` are written as they are, later:
 * the caller must not change them afterwards. When the reader has gone (`EPIPE`) or a write fails
 * otherwise, every later call throws that error.
 */
import { close, write as writeToDescriptor } from 'node:fs';

/** Writes of this size or more are not gathered (nor copied). */
const gatherBelow = 64 * 1024;
/** Gathered pieces are written once they add up to this. */
const gatherUpTo = 256 * 1024;
/** Bytes queued behind the write in flight before `write` waits. */
const aheadBytes = 4 * 1024 * 1024;

function writeAll(fd: number, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const attempt = (offset: number) => {
      writeToDescriptor(fd, data, offset, data.length - offset, null, (error, written) => {
        if (error) return reject(error);
        if (offset + written < data.length) return attempt(offset + written);
        resolve();
      });
    };
    attempt(0);
  });
}

export class PipeWriter {
  private failure: Error | undefined;
  private readonly gathered: Buffer[] = [];
  private gatheredBytes = 0;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  /** The writing loop, while one runs. */
  private writing: Promise<void> | undefined;
  /** Callers waiting for the queue to shrink below `aheadBytes` (or for a failure). */
  private waiting: Array<() => void> = [];
  private closing: Promise<void> | undefined;
  private closed = false;

  /** `fd`: the write end of a pipe, in blocking mode; this writer closes it (`end` or `destroy`). */
  constructor(private readonly fd: number) {}

  /** The error a write failed with (`EPIPE` once the reader has gone), if one has. */
  get failed(): Error | undefined {
    return this.failure;
  }

  /** Queues `chunk`; waits while more than `aheadBytes` are queued. */
  async write(chunk: Buffer): Promise<void> {
    this.checkOpen();
    if (chunk.length >= gatherBelow) {
      this.moveGathered();
      this.enqueue(chunk);
    } else {
      this.gathered.push(chunk);
      this.gatheredBytes += chunk.length;
      if (this.gatheredBytes >= gatherUpTo) this.moveGathered();
    }
    while (this.queuedBytes > aheadBytes && !this.failure && !this.closed) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    this.checkOpen();
  }

  /** Queues what was gathered, and waits until everything queued has been written. */
  async flush(): Promise<void> {
    this.checkOpen();
    this.moveGathered();
    while (this.writing) await this.writing;
    this.checkOpen();
  }

  /** Queues what was gathered, without waiting for it to be written. */
  push(): void {
    this.checkOpen();
    this.moveGathered();
  }

  /** Writes `last` after everything queued, then closes the pipe (the reader sees its end). */
  async end(last: Buffer): Promise<void> {
    try {
      await this.write(last);
      await this.flush();
    } finally {
      await this.destroy();
    }
  }

  /**
   * Closes the pipe once the write in flight has returned (nothing more is written). A write blocked
   * on a full pipe returns only when the reader reads or goes away: end the reader first.
   */
  destroy(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.queue.length = 0;
      this.queuedBytes = 0;
      this.gathered.length = 0;
      this.gatheredBytes = 0;
      this.wakeWaiting();
      while (this.writing) await this.writing;
      await new Promise<void>((resolve) => close(this.fd, () => resolve()));
    })();
    return this.closing;
  }

  private checkOpen(): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw Object.assign(new Error('write after the pipe was closed'), { code: 'EPIPE' });
  }

  private moveGathered(): void {
    if (this.gatheredBytes === 0) return;
    const data = this.gathered.length === 1 ? this.gathered[0]! : Buffer.concat(this.gathered);
    this.gathered.length = 0;
    this.gatheredBytes = 0;
    this.enqueue(data);
  }

  private enqueue(data: Buffer): void {
    if (this.failure || this.closed) return;
    this.queue.push(data);
    this.queuedBytes += data.length;
    this.writing ??= this.writeQueued();
  }

  private async writeQueued(): Promise<void> {
    try {
      for (let next = this.queue.shift(); next !== undefined; next = this.queue.shift()) {
        try {
          await writeAll(this.fd, next);
        } catch (error) {
          this.failure ??= error as Error;
          this.queue.length = 0;
          this.queuedBytes = 0;
          return;
        }
        this.queuedBytes -= next.length;
        if (this.queuedBytes <= aheadBytes) this.wakeWaiting();
      }
    } finally {
      this.writing = undefined;
      this.wakeWaiting();
    }
  }

  private wakeWaiting(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const wake of waiting) wake();
  }
}
