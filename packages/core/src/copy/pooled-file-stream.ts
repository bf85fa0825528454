import { read } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { fileReadBuffers, type ReadBuffers } from './buffer-pool.js';

/** Options of `pooledFileStream`. */
export interface PooledFileStreamOptions {
  /** Where to start reading (default 0). */
  start?: number;
  /** How many bytes to read from `start` (default: up to the end of the file). */
  length?: number;
  /** The buffers to read into (default `fileReadBuffers`). */
  buffers?: ReadBuffers;
  /** Whether the handle is closed when the stream ends or is destroyed (default true). */
  autoClose?: boolean;
}

/**
 * The bytes of an open file as a byte stream whose chunks are read into buffers lent by `buffers`
 * (`ReadBuffers`: 1 MiB each for `fileReadBuffers`): a reader that is the last to hold a chunk gives its
 * memory back with `buffers.release(chunk)` (the copy pipeline does that through
 * `PutBlobOptions.chunkWritten`), and the next reads go into it again: a copy reads its blobs into a
 * few megabytes reused, not into a fresh buffer per chunk left to the garbage collector. Chunks nobody
 * releases are garbage as any buffer. One read is ahead of the consumer at most (as `createReadStream`
 * with a 1 MiB `highWaterMark`). Destroying the stream while a read is running releases that read's
 * chunk once it completes, then closes the handle (with `autoClose`).
 */
export function pooledFileStream(handle: FileHandle, options: PooledFileStreamOptions = {}): Readable {
  const buffers = options.buffers ?? fileReadBuffers;
  const autoClose = options.autoClose ?? true;
  let position = options.start ?? 0;
  let remaining = options.length ?? Number.POSITIVE_INFINITY;
  let reading = false;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= autoClose ? handle.close().catch(() => undefined) : Promise.resolve();
    return closing;
  };
  let afterRead: (() => void) | undefined;
  const stream = new Readable({
    highWaterMark: buffers.size,
    read() {
      if (reading) return;
      if (remaining <= 0) {
        stream.push(null);
        return;
      }
      reading = true;
      const buffer = buffers.take();
      const wanted = Math.min(buffer.byteLength, remaining);
      read(handle.fd, buffer, 0, wanted, position, (error, bytes) => {
        reading = false;
        buffers.filled(buffer, error ? 0 : bytes);
        const chunk = buffer.subarray(0, error ? 0 : bytes);
        if (stream.destroyed) {
          buffers.release(chunk);
          afterRead?.();
          return;
        }
        if (error) {
          stream.destroy(error);
          return;
        }
        if (bytes === 0) {
          remaining = 0;
          stream.push(null);
          return;
        }
        position += bytes;
        remaining -= bytes;
        stream.push(chunk);
      });
    },
    destroy(error, callback) {
      const finish = (): void => {
        void close().then(() => callback(error));
      };
      if (reading) afterRead = finish;
      else finish();
    },
  });
  stream.once('end', () => {
    void close();
  });
  return stream;
}
