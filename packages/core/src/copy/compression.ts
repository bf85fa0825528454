import { once } from 'node:events';
import { pipeline, type Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import { type Digest, Digester } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import { parallelGzipStage } from './parallel-gzip.js';

/** A compression Gantry can detect in layer bytes. */
export type DetectedCompression = 'gzip' | 'zstd' | 'none';

/** Bytes needed to recognise a compression format. */
const sniffLength = 4;

/** Recognises gzip (1f 8b 08) and zstd (28 b5 2f fd) by their magic numbers; anything else is 'none'. */
export function detectCompression(prefix: Uint8Array): DetectedCompression {
  if (prefix.length >= 3 && prefix[0] === 0x1f && prefix[1] === 0x8b && prefix[2] === 0x08) return 'gzip';
  if (
    prefix.length >= 4 &&
    prefix[0] === 0x28 &&
    prefix[1] === 0xb5 &&
    prefix[2] === 0x2f &&
    prefix[3] === 0xfd
  ) {
    return 'zstd';
  }
  return 'none';
}

type ZstdFactories = {
  createZstdCompress?: (options?: unknown) => Transform;
  createZstdDecompress?: (options?: unknown) => Transform;
};

function zstdUnavailable(operation: string): GantryError {
  return new GantryError(
    ErrorCodes.NotSupported,
    `zstd ${operation} needs node:zlib zstd support (Node.js >= 22.15); this is Node.js ${process.version}`,
  );
}

/** A transform compressing to `format`; zstd needs Node.js >= 22.15, else `ERR_GANTRY_NOT_SUPPORTED`. */
export function createCompressor(format: 'gzip' | 'zstd', level?: number): Transform {
  if (format === 'gzip') return zlib.createGzip(level === undefined ? {} : { level });
  const factory = (zlib as unknown as ZstdFactories).createZstdCompress;
  if (!factory) throw zstdUnavailable('compression');
  const constants = zlib.constants as unknown as Record<string, number>;
  const levelParameter = constants.ZSTD_c_compressionLevel;
  return factory(
    level === undefined || levelParameter === undefined ? {} : { params: { [levelParameter]: level } },
  );
}

/**
 * A pipeline stage compressing its input to `format`: gzip on several threads (`parallelGzipStage`,
 * like skopeo's pgzip), zstd through node:zlib (Node.js >= 22.15, else `ERR_GANTRY_NOT_SUPPORTED`).
 */
export function compressingStage(
  format: 'gzip' | 'zstd',
  level?: number,
): (source: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array> {
  if (format === 'gzip') return parallelGzipStage(level === undefined ? {} : { level });
  const compressor = createCompressor(format, level);
  return (source) => throughTransform(source, compressor);
}

/** Size of the chunks a decompressor emits. */
const decompressedChunkSize = 1024 * 1024;

/** A transform decompressing `format`; zstd needs Node.js >= 22.15, else `ERR_GANTRY_NOT_SUPPORTED`. */
export function createDecompressor(format: 'gzip' | 'zstd'): Transform {
  // 1 MiB output chunks instead of zlib's 16 KiB: 64 times fewer callbacks and chunks downstream.
  if (format === 'gzip') return zlib.createGunzip({ chunkSize: decompressedChunkSize });
  const factory = (zlib as unknown as ZstdFactories).createZstdDecompress;
  if (!factory) throw zstdUnavailable('decompression');
  return factory();
}

/** Whether this Node.js can compress and decompress zstd. */
export function zstdAvailable(): boolean {
  const factories = zlib as unknown as ZstdFactories;
  return (
    typeof factories.createZstdCompress === 'function' && typeof factories.createZstdDecompress === 'function'
  );
}

/**
 * Reads the first bytes of `source` (at least enough to recognise a compression format), and returns
 * the detected compression and an iterable yielding every byte of `source`, the peeked ones included.
 */
export async function peekCompression(
  source: AsyncIterable<Uint8Array>,
): Promise<{ compression: DetectedCompression; stream: AsyncIterable<Uint8Array> }> {
  const iterator = source[Symbol.asyncIterator]();
  const peeked: Uint8Array[] = [];
  let length = 0;
  let ended = false;
  while (length < sniffLength) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    peeked.push(next.value);
    length += next.value.byteLength;
  }
  const prefix = Buffer.concat(peeked);
  async function* replay(): AsyncGenerator<Uint8Array, void, undefined> {
    try {
      for (const chunk of peeked) yield chunk;
      if (ended) return;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    } finally {
      if (!ended) await iterator.return?.();
    }
  }
  return { compression: detectCompression(prefix), stream: replay() };
}

/**
 * Passes `source` through a Node.js transform (e.g. gzip) and yields the transform's output, with
 * backpressure; an error on either side rejects the iteration.
 */
export async function* throughTransform(
  source: AsyncIterable<Uint8Array>,
  transform: Transform,
): AsyncGenerator<Uint8Array, void, undefined> {
  const output = pipeline(source, transform, () => {
    // Errors reach the consumer through the iteration of `output` below.
  }) as unknown as AsyncIterable<Uint8Array> & { destroy(error?: Error): void };
  try {
    for await (const chunk of output) yield chunk;
  } finally {
    output.destroy();
  }
}

/**
 * A pipeline stage that passes bytes through unchanged and computes the digest of their uncompressed
 * form (a layer's DiffID), decompressing gzip or zstd on the side. `onEnd` receives the DiffID once the
 * source ended without error. `verifiedDigest`, when given, is the sha256 digest the bytes are verified
 * against elsewhere in the pipeline: uncompressed bytes then are not hashed a second time.
 */
export function diffIdStage(
  onEnd: (diffId: Digest) => void,
  verifiedDigest?: Digest,
): (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Uint8Array, void, undefined> {
  return async function* computeDiffId(source) {
    const { compression, stream } = await peekCompression(source);
    if (compression === 'none' && verifiedDigest !== undefined) {
      yield* stream;
      onEnd(verifiedDigest);
      return;
    }
    const digester = new Digester();
    if (compression === 'none') {
      for await (const chunk of stream) {
        digester.update(chunk);
        yield chunk;
      }
      onEnd(digester.digest());
      return;
    }
    const decompressor = createDecompressor(compression);
    let failure: unknown;
    decompressor.on('data', (chunk: Uint8Array) => digester.update(chunk));
    decompressor.on('error', (error) => {
      failure ??= error;
    });
    const finished = once(decompressor, 'end');
    finished.catch(() => {});
    try {
      for await (const chunk of stream) {
        if (failure) throw failure;
        if (!decompressor.write(chunk)) {
          await Promise.race([once(decompressor, 'drain'), finished]);
        }
        yield chunk;
      }
      if (failure) throw failure;
      decompressor.end();
      await finished;
      if (failure) throw failure;
      onEnd(digester.digest());
    } finally {
      decompressor.destroy();
    }
  };
}
