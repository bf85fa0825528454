import type { Writable } from 'node:stream';

/**
 * Has `output` hand each chunk it wrote to `written` (a destination's `PutBlobOptions.chunkWritten`) once
 * the chunk's write is done or failed: `output` does not read the chunk after that, so its buffer may be
 * read into again. Works on any `Writable` that implements `_write` (and `_writev`, when it has one), such
 * as `fs.WriteStream`. Chunks still queued when the stream is destroyed are not handed back (the garbage
 * collector takes them). Whoever calls it must be the chunks' last reader.
 */
export function handBackWrittenChunks(output: Writable, written: (chunk: Uint8Array) => void): void {
  const write = output._write;
  const writev = output._writev;
  output._write = function (chunk: Uint8Array, encoding, callback) {
    write.call(this, chunk, encoding, (error?: Error | null) => {
      written(chunk);
      callback(error);
    });
  };
  if (writev !== undefined) {
    output._writev = function (chunks, callback) {
      writev.call(this, chunks, (error?: Error | null) => {
        for (const { chunk } of chunks) written(chunk as Uint8Array);
        callback(error);
      });
    };
  }
}
