/**
 * A byte stream's chunks as they were pushed: the very `Uint8Array`s, never joined.
 *
 * A `Readable`'s own async iterator (what `for await` and `pipeline` use) calls `read()`, which in byte
 * mode returns everything buffered in one piece: the chunks waiting are joined into new memory (a copy of
 * the bytes and fresh pages to fault in), and the chunks the copy pipeline lent (`PutBlobOptions.chunkWritten`)
 * never come back to it. Here the stream flows ('data' events, one chunk each) into a small queue,
 * paused while the queue holds `highWaterMark` bytes or more.
 *
 * Ends when the stream ends; throws the stream's error (or a premature close) as soon as it is seen; a
 * consumer that stops early (`return`, a throw) destroys the stream, as the stream's own iterator does.
 */
import type { Readable } from 'node:stream';

/** Bytes queued ahead of the consumer before the stream is paused. */
const defaultHighWaterMark = 1024 * 1024;

export async function* ownChunks(
  stream: Readable,
  highWaterMark: number = defaultHighWaterMark,
): AsyncGenerator<Uint8Array, void, undefined> {
  const queue: Uint8Array[] = [];
  let head = 0;
  let queuedBytes = 0;
  let ended = false;
  let failure: { error: unknown } | undefined;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const onData = (chunk: Uint8Array): void => {
    queue.push(chunk);
    queuedBytes += chunk.byteLength;
    if (queuedBytes >= highWaterMark) stream.pause();
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
    if (!ended && failure === undefined) {
      const error =
        stream.errored ?? Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
      failure = { error };
    }
    notify();
  };
  stream.on('data', onData);
  stream.on('end', onEnd);
  stream.on('error', onError);
  stream.on('close', onClose);
  if (stream.errored) onError(stream.errored);
  else if (stream.destroyed && !stream.readableEnded) onClose();
  try {
    for (;;) {
      if (failure !== undefined) throw failure.error;
      if (head < queue.length) {
        const chunk = queue[head] as Uint8Array;
        queue[head] = undefined as unknown as Uint8Array;
        head++;
        if (head === queue.length) {
          queue.length = 0;
          head = 0;
        }
        queuedBytes -= chunk.byteLength;
        if (queuedBytes < highWaterMark && stream.isPaused() && !ended) stream.resume();
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
    // Late errors of a stream destroyed here are expected: keep a listener so they are not uncaught.
    stream.off('error', onError);
    stream.on('error', () => {});
    if (!ended) stream.destroy();
  }
}
