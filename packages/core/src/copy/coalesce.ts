/**
 * Bytes handed to a decompressor are gathered into chunks of this size first. Node's zlib streams run each
 * written chunk as one job on the libuv thread pool (a wake-up of a pool thread and one of the event loop
 * per chunk): a registry's 64 KiB reads made 16 times more jobs than 1 MiB chunks, and the main thread spent
 * more time scheduling them than the pool spent inflating.
 */
export const decompressorInputChunkSize = 1024 * 1024;

/**
 * `source` re-cut into chunks of at least `minimumBytes` (the last one may be shorter). A chunk already
 * that long passes as it is; shorter ones are copied together. The bytes and their order are unchanged.
 */
export async function* coalesceChunks(
  source: AsyncIterable<Uint8Array>,
  minimumBytes: number,
): AsyncGenerator<Uint8Array, void, undefined> {
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  for await (const chunk of source) {
    if (pendingBytes === 0 && chunk.byteLength >= minimumBytes) {
      yield chunk;
      continue;
    }
    pending.push(chunk);
    pendingBytes += chunk.byteLength;
    if (pendingBytes >= minimumBytes) {
      const gathered = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      yield gathered;
    }
  }
  if (pendingBytes > 0) yield pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
}
