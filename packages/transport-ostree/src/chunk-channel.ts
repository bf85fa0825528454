/**
 * Hands chunks from a writer to one async reader as they are, without copying or joining them (a
 * `PassThrough` read through its async iterator joins whatever it has buffered into one new buffer:
 * a copy of every byte of the blob, into freshly allocated memory). `push` resolves once fewer than
 * `highWaterMark` bytes are waiting; `end` ends the reader's iteration after the chunks pushed;
 * `close` drops what is waiting, makes further pushes no-ops, releases a waiting writer and makes the
 * reader's iteration throw (the data is incomplete). A reader that stops iterating early closes the
 * channel.
 */
export class ChunkChannel implements AsyncIterable<Uint8Array> {
  private readonly chunks: Uint8Array[] = [];
  private waitingBytes = 0;
  private ended = false;
  private closedFlag = false;
  private wakeReader: (() => void) | undefined;
  private wakeWriters: Array<() => void> = [];

  constructor(private readonly highWaterMark: number) {}

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Queues `chunk` for the reader; resolves when there is room again (or the channel is closed). */
  async push(chunk: Uint8Array): Promise<void> {
    if (this.closedFlag || this.ended) return;
    this.chunks.push(chunk);
    this.waitingBytes += chunk.byteLength;
    this.wake();
    while (this.waitingBytes >= this.highWaterMark && !this.closedFlag) {
      await new Promise<void>((resolve) => this.wakeWriters.push(resolve));
    }
  }

  end(): void {
    this.ended = true;
    this.wake();
  }

  close(): void {
    this.closedFlag = true;
    this.chunks.length = 0;
    this.waitingBytes = 0;
    this.wake();
    this.releaseWriters();
  }

  private wake(): void {
    const wake = this.wakeReader;
    this.wakeReader = undefined;
    wake?.();
  }

  private releaseWriters(): void {
    const writers = this.wakeWriters;
    this.wakeWriters = [];
    for (const release of writers) release();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        const chunk = this.chunks.shift();
        if (chunk !== undefined) {
          this.waitingBytes -= chunk.byteLength;
          if (this.waitingBytes < this.highWaterMark) this.releaseWriters();
          yield chunk;
          continue;
        }
        if (this.closedFlag) throw new Error('the stream was closed before its end');
        if (this.ended) return;
        await new Promise<void>((resolve) => {
          this.wakeReader = resolve;
        });
      }
    } finally {
      if (!this.ended || this.chunks.length > 0) this.close();
    }
  }
}
