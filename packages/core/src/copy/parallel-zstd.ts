import { availableParallelism } from 'node:os';
import { transientBuffers } from './buffer-pool.js';
import { libzstd } from './libzstd.js';
import { inBlocks } from './parallel-gzip.js';

/** Options of {@link parallelZstdStage}. */
export interface ParallelZstdOptions {
  /** zstd level (default 3, zstd's and skopeo's default). */
  level?: number;
  /** Bytes of input per frame (default 4 MiB: larger than level 3's 2 MiB window, so little is lost). */
  frameSize?: number;
  /** Frames compressed at once (default: the number of CPUs, at least 2). */
  concurrency?: number;
}

/** The default `frameSize`. */
export const defaultZstdFrameSize = 4 * 1024 * 1024;

/** Whether `parallelZstdStage` can run here (koffi and the system's libzstd load). */
export function parallelZstdAvailable(): boolean {
  return libzstd() !== null;
}

/**
 * A pipeline stage that compresses its input to zstd on several threads: the input is cut into
 * frames of `frameSize` bytes, each compressed as an independent zstd frame (with its content size)
 * by libzstd on libuv's pool, and written out in order. A zstd stream may be any series of frames
 * (RFC 8878 section 3.1): `zstd -d`, Go's klauspost/compress (skopeo, podman) and zstd-napi decode them
 * as one stream. The output depends on the input and the options only, never on timing; memory is
 * bounded by `concurrency` frames in flight. Throws when libzstd is not available
 * (`parallelZstdAvailable`).
 */
export function parallelZstdStage(
  options: ParallelZstdOptions = {},
): (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Uint8Array, void, undefined> {
  const engine = libzstd();
  if (!engine) throw new Error('parallel zstd needs koffi and the system zstd library (libzstd.so.1)');
  const level = options.level ?? 3;
  if (!Number.isInteger(level) || level < -7 || level > 22) {
    throw new RangeError(`zstd compression level must be an integer from -7 to 22, got ${level}`);
  }
  const frameSize = options.frameSize ?? defaultZstdFrameSize;
  const concurrency = Math.max(1, options.concurrency ?? Math.max(2, availableParallelism()));
  return async function* zstdFramesInParallel(source) {
    let frames = 0;
    const start = (block: Uint8Array, whole: boolean) => engine.frame(block, level, whole);
    for await (const frame of inBlocks(source, frameSize, concurrency, start, true)) {
      frames += 1;
      // Garbage once sent on.
      transientBuffers.note(frame.byteLength);
      yield frame;
    }
    // Empty input: one empty frame, as any zstd writer gives.
    if (frames === 0) yield await engine.frame(new Uint8Array(0), level, false);
  };
}
