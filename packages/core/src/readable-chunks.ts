import type { Readable } from 'node:stream';

/** Bytes `readableChunks` queues by default before it pauses the stream (its own buffer comes on top). */
export const defaultQueuedBytesLimit = 256 * 1024;

/**
 * The chunks of a byte stream one by one, as the stream emitted them, with backpressure: the stream is
 * paused while `queuedBytesLimit` bytes or more wait for the consumer (so at least one chunk). An 'error' of the stream, or its
 * 'close' before 'end' (`ERR_STREAM_PREMATURE_CLOSE`), rejects the iteration; ending the iteration
 * early (break, return, a throw in the consumer) destroys the stream.
 *
 * Why not `for await (const chunk of stream)`: a Readable's own async iterator calls `read()`, which
 * joins every chunk buffered at that moment into one new buffer, a copy of each of those bytes. A
 * stream fed faster than it is read (socket reads of 64 KiB, a decompressor's output) would have most
 * of its bytes copied once more that way.
 */
export async function* readableChunks(
  stream: Readable,
  queuedBytesLimit: number = defaultQueuedBytesLimit,
): AsyncGenerator<Uint8Array, void, undefined> {
  const queue: Uint8Array[] = [];
  let queuedBytes = 0;
  let ended = stream.readableEnded;
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const resume = wake;
    wake = undefined;
    resume?.();
  };
  const onData = (chunk: Uint8Array): void => {
    queue.push(chunk);
    queuedBytes += chunk.byteLength;
    if (queuedBytes >= queuedBytesLimit) stream.pause();
    notify();
  };
  const onEnd = (): void => {
    ended = true;
    notify();
  };
  const onError = (error: unknown): void => {
    failure ??= { error };
    notify();
  };
  const onClose = (): void => {
    if (!ended) {
      const error = new Error('Premature close');
      (error as Error & { code: string }).code = 'ERR_STREAM_PREMATURE_CLOSE';
      failure ??= { error };
    }
    notify();
  };
  if (stream.errored) failure = { error: stream.errored };
  else if (stream.destroyed && !ended) onClose();
  stream.on('data', onData);
  stream.once('end', onEnd);
  stream.on('error', onError);
  stream.once('close', onClose);
  // Flowing even when it was paused before (a 'data' listener alone does not resume such a stream).
  if (failure === undefined && !ended) stream.resume();
  try {
    for (;;) {
      if (failure) throw failure.error;
      const chunk = queue.shift();
      if (chunk !== undefined) {
        queuedBytes -= chunk.byteLength;
        if (queue.length === 0 && stream.isPaused()) stream.resume();
        yield chunk;
        continue;
      }
      if (ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.off('close', onClose);
    if (!ended) stream.destroy();
    // Late errors of a destroyed stream are expected; keep a listener so they are not uncaught.
    stream.off('error', onError);
    stream.on('error', () => {});
  }
}
