import { once } from 'node:events';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Duplex, pipeline, Transform } from 'node:stream';
import { ReadableStream } from 'node:stream/web';
import * as zlib from 'node:zlib';
import { type Digest, Digester } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import { readableChunks } from '../readable-chunks.js';
import { type BufferPool, bufferPoolOf, transientBuffers } from './buffer-pool.js';
import { type LentViewBuffers, lentViewBuffersOf } from './lent-output-buffers.js';
import { type GunzipContext, libisal } from './libisal-inflate.js';
import { libzstd, type ZstdDecompressionContext } from './libzstd.js';
import { defaultGzipBlockSize, parallelGzipStage } from './parallel-gzip.js';
import { defaultZstdFrameSize, parallelZstdAvailable, parallelZstdStage } from './parallel-zstd.js';

/** A compression Gantry can write to layers. */
export type CompressionFormat = 'gzip' | 'zstd';

/** A compression Gantry can detect in layer bytes (and decompress). */
export type DetectedCompression = 'gzip' | 'zstd' | 'xz' | 'bzip2' | 'none';

/** Bytes needed to recognise a compression format (xz's magic number is the longest). */
export const sniffLength = 6;

/** Recognises gzip, zstd, xz and bzip2 by their magic numbers; anything else is 'none'. */
export function detectCompression(prefix: Uint8Array): DetectedCompression {
  const starts = (...bytes: number[]) =>
    prefix.length >= bytes.length && bytes.every((byte, index) => prefix[index] === byte);
  if (starts(0x1f, 0x8b, 0x08)) return 'gzip';
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'zstd';
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'xz';
  if (starts(0x42, 0x5a, 0x68)) return 'bzip2';
  return 'none';
}

/** zstd's default compression level (also klauspost/compress's "default" speed, which skopeo uses). */
export const defaultZstdLevel = 3;

/**
 * Where zstd comes from: Node.js's own `node:zlib` (Node.js 22.15 and later), else the `zstd-napi`
 * native binding (an optional dependency, built from its vendored zstd sources on install).
 */
export type ZstdImplementation = 'node:zlib' | 'zstd-napi';

type ZstdFactories = {
  createZstdCompress?: (options?: unknown) => Transform;
  createZstdDecompress?: (options?: unknown) => Transform;
};

interface ZstdNapiModule {
  CompressStream: new (parameters?: Record<string, unknown>) => Transform;
  DecompressStream: new () => Transform;
}

/** The part of zstd-napi's low-level binding Gantry's zstd reader uses. */
interface ZstdNapiBinding {
  DCtx: new () => {
    /** `ZSTD_decompressStream`: [0 at the end of a frame (else a hint), bytes written, bytes read]. */
    decompressStream(destination: Uint8Array, source: Uint8Array): [number, number, number];
  };
}

let zstdNapiModule: ZstdNapiModule | null | undefined;

/** `zstd-napi`, loaded on first use; null when it is not installed or its binding failed to build. */
function loadZstdNapi(): ZstdNapiModule | null {
  if (zstdNapiModule === undefined) {
    try {
      zstdNapiModule = createRequire(import.meta.url)('zstd-napi') as ZstdNapiModule;
    } catch {
      zstdNapiModule = null;
    }
  }
  return zstdNapiModule;
}

function nodeZlibHasZstd(): boolean {
  const factories = zlib as unknown as ZstdFactories;
  return (
    typeof factories.createZstdCompress === 'function' && typeof factories.createZstdDecompress === 'function'
  );
}

/**
 * The zstd implementation this process uses: `node:zlib` where Node.js has zstd (22.15+), else
 * `zstd-napi` when it is installed; undefined when neither is. `GANTRY_ZSTD_IMPLEMENTATION`
 * (`node:zlib` or `zstd-napi`) chooses one explicitly (undefined when that one is missing); `none`
 * disables zstd.
 */
export function zstdImplementation(): ZstdImplementation | undefined {
  const wanted = process.env.GANTRY_ZSTD_IMPLEMENTATION;
  if (wanted === 'none') return undefined;
  if (wanted === 'zstd-napi') return loadZstdNapi() ? 'zstd-napi' : undefined;
  if (wanted === 'node:zlib') return nodeZlibHasZstd() ? 'node:zlib' : undefined;
  if (nodeZlibHasZstd()) return 'node:zlib';
  return loadZstdNapi() ? 'zstd-napi' : undefined;
}

/** Whether this process can compress and decompress zstd. */
export function zstdAvailable(): boolean {
  return zstdImplementation() !== undefined;
}

function zstdUnavailable(operation: string): GantryError {
  return new GantryError(
    ErrorCodes.NotSupported,
    `zstd ${operation} needs node:zlib zstd (Node.js >= 22.15) or the zstd-napi package; this is Node.js ${process.version} and zstd-napi is not installed (or its native binding was not built: allow its build script, e.g. pnpm's onlyBuiltDependencies)`,
  );
}

/** The size of the jobs multi-threaded zstd hands its workers. */
const zstdJobBytes = 1024 * 1024;

/** Worker threads per zstd-napi stream (a copy compresses several layers at once, each with its own). */
function zstdWorkerCount(): number {
  return Math.max(1, Math.min(2, availableParallelism()));
}

/** A transform compressing to `format`; zstd needs `zstdImplementation()`, else `ERR_GANTRY_NOT_SUPPORTED`. */
export function createCompressor(format: CompressionFormat, level?: number): Transform {
  if (format === 'gzip') return zlib.createGzip(level === undefined ? {} : { level });
  const implementation = zstdImplementation();
  if (implementation === 'node:zlib') {
    const factory = (zlib as unknown as ZstdFactories).createZstdCompress!;
    const constants = zlib.constants as unknown as Record<string, number>;
    const levelParameter = constants.ZSTD_c_compressionLevel;
    return factory(
      levelParameter === undefined ? {} : { params: { [levelParameter]: level ?? defaultZstdLevel } },
    );
  }
  if (implementation === 'zstd-napi') {
    const { CompressStream } = loadZstdNapi()!;
    // Multi-threaded zstd (its own worker threads) keeps the JavaScript thread free for hashing. Jobs
    // of 1 MiB (zstd's default for level 3 is several MiB per worker, buffers included ~50 MiB per
    // stream) keep memory at ~20 MiB per stream for ~1 % larger output.
    return new CompressStream({
      compressionLevel: level ?? defaultZstdLevel,
      nbWorkers: zstdWorkerCount(),
      jobSize: zstdJobBytes,
    });
  }
  throw zstdUnavailable('compression');
}

/** Size of the chunks a decompressor emits by default. */
export const decompressedChunkSize = 1024 * 1024;

/** Options of `createDecompressor`. */
export interface DecompressorOptions {
  /** See `createDecompressor`. */
  pooledOutput?: boolean;
  /**
   * Learns each input chunk once the decompressor will not read it again (gzip, and zstd with
   * `pooledOutput` where libzstd loads; other decompressors never call it): for a caller that is the
   * chunks' last reader and reuses their memory (`releaseReadChunk`).
   */
  inputDone?: (chunk: Uint8Array) => void;
  /**
   * gzip: the output is written into buffers lent out view by view (`lentViewBuffersOf(chunkSize)`)
   * instead of a fresh buffer each time one fills, for a reader whose last reader releases every view
   * (`releaseCompressedChunk`, the copy's `PutBlobOptions.chunkWritten`) and whose other readers `hold`
   * the views they read after passing them on. Other formats ignore it.
   */
  lentOutput?: boolean;
}

/**
 * Has `gunzip` call `inputDone` with each chunk written to it once zlib read all of it: node:zlib
 * calls a chunk's transform callback once its input is consumed and lets go of it
 * (`processCallback`).
 */
function handOnInputWhenRead(gunzip: zlib.Gunzip, inputDone: (chunk: Uint8Array) => void): void {
  const transform = gunzip._transform.bind(gunzip);
  gunzip._transform = (chunk: Buffer, encoding: BufferEncoding, done: (error?: Error | null) => void) => {
    transform(chunk, encoding, (error?: Error | null) => {
      // Not the empty chunk zlib's flush writes to itself.
      if (!error && chunk.byteLength > 0) inputDone(chunk);
      done(error);
    });
  };
}

/** The part of node:zlib's stream state `writeIntoLentViews` replaces (Node.js 20 and 22: lib/zlib.js). */
interface ZlibOutputState {
  _outBuffer?: unknown;
  _outOffset?: unknown;
  _chunkSize?: unknown;
}

/**
 * Has `gunzip` write its output into buffers of `views` and lend what it pushes as views of them: node:zlib
 * writes into `_outBuffer` from `_outOffset` and, once it filled it, replaces it with a fresh
 * `Buffer.allocUnsafe(chunkSize)` (never written: its memory is not touched). The replacement is taken
 * from `views` instead, and the buffer it replaces is closed (it comes back once every view of it was
 * released). Returns false, changing nothing, when the stream does not have the state this relies on.
 */
function writeIntoLentViews(gunzip: zlib.Gunzip, chunkSize: number): boolean {
  const state = gunzip as unknown as ZlibOutputState;
  if (
    !Buffer.isBuffer(state._outBuffer) ||
    state._outBuffer.byteLength !== chunkSize ||
    state._outOffset !== 0 ||
    state._chunkSize !== chunkSize ||
    Object.getOwnPropertyDescriptor(gunzip, '_outBuffer')?.writable !== true
  ) {
    return false;
  }
  const views = lentViewBuffersOf(chunkSize);
  let current = views.take();
  Object.defineProperty(gunzip, '_outBuffer', {
    configurable: true,
    enumerable: true,
    get: () => current,
    set: (fresh: Buffer) => {
      views.close(current);
      current = fresh.byteLength === chunkSize ? views.take() : fresh;
    },
  });
  const push = gunzip.push.bind(gunzip);
  gunzip.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk instanceof Uint8Array) views.lend(chunk);
    return push(chunk, encoding);
  };
  // The last buffer, partly filled, comes back once its views are released.
  gunzip.once('end', () => views.close(current));
  return true;
}

/**
 * A stream decompressing `format`: gzip through the system's ISA-L (`libisal`, its calls off this thread:
 * `IsalGunzipDecompressor`) where it loads (and `GANTRY_GZIP_DECOMPRESSION` is not `node:zlib`), else
 * node:zlib, zstd through `zstdImplementation()`, xz
 * through xz-decompress (xz-embedded compiled to WebAssembly), bzip2 through unbzip2-stream (pure
 * JavaScript). A missing zstd implementation is `ERR_GANTRY_NOT_SUPPORTED`.
 *
 * gzip and zstd (through zstd-napi) output comes in chunks of `chunkSize` bytes (default 1 MiB), the
 * last one shorter: a compressing stage whose blocks have that size then takes each chunk as a block,
 * with no copy (see `inBlocks`). gzip may hand a full chunk over as several consecutive views of one
 * buffer (as many as input chunks went into it).
 *
 * `options.pooledOutput`: zstd's (and, through ISA-L, gzip's) full chunks are taken from the process-wide pool of `chunkSize`-byte
 * buffers (`bufferPoolOf`), for a reader that gives each one back when done with it, as the block
 * compressors do (`inBlocks`): the memory is then reused chunk after chunk instead of waiting for the
 * garbage collector. A reader that keeps or hands on the chunks must not ask for it. The input chunks
 * are then noted to `transientBuffers` (`GarbagePacer`) once decompressed. zstd is then decoded by the
 * system's libzstd off this thread (`LibzstdDecompressor`) where it loads (and
 * `GANTRY_ZSTD_IMPLEMENTATION` names no other): a recompression's thread then only hashes and hands
 * blocks on while the pool decodes and compresses.
 */
export function createDecompressor(
  format: Exclude<DetectedCompression, 'none'>,
  chunkSize: number = decompressedChunkSize,
  options: DecompressorOptions = {},
): Duplex {
  // Large output chunks instead of zlib's 16 KiB: far fewer callbacks and chunks downstream.
  if (format === 'gzip') {
    const isal = libisal();
    if (isal) {
      const output =
        options.pooledOutput === true ? 'pooled' : options.lentOutput === true ? 'lent' : 'fresh';
      return new IsalGunzipDecompressor(isal.gunzipContext(), chunkSize, output, options.inputDone);
    }
    const gunzip = zlib.createGunzip({ chunkSize });
    if (options.inputDone) handOnInputWhenRead(gunzip, options.inputDone);
    if (options.lentOutput === true) writeIntoLentViews(gunzip, chunkSize);
    return gunzip;
  }
  if (format === 'xz') return Duplex.from(xzDecompressing);
  if (format === 'bzip2') return Duplex.from(bzip2Decompressing);
  const engine = options.pooledOutput === true ? libzstd() : null;
  if (engine) return new LibzstdDecompressor(engine.decompressionContext(), chunkSize, options.inputDone);
  const implementation = zstdDecompressionImplementation();
  if (implementation === 'node:zlib') return (zlib as unknown as ZstdFactories).createZstdDecompress!();
  if (implementation === 'zstd-napi') {
    const binding = loadZstdNapiBinding();
    if (binding) return new ZstdChunkedOutputDecompressor(binding, chunkSize, options.pooledOutput === true);
    return new (loadZstdNapi()!.DecompressStream)();
  }
  throw zstdUnavailable('decompression');
}

/**
 * gzip decompression through ISA-L (`Libisal`), each call on koffi's asynchronous call threads (libuv's
 * pool), one at a time, written into output buffers of `chunkSize` bytes:
 * - `pooled`: from the process-wide pool (`bufferPoolOf`), each pushed once full (the last one at the
 *   end), for a reader that gives them back (see `createDecompressor`'s `pooledOutput`); each input chunk,
 *   once decoded, goes to `inputDone` when given, else is noted to `transientBuffers`;
 * - `lent`: from `lentViewBuffersOf(chunkSize)`, each call's bytes pushed as a view lent out (see
 *   `createDecompressor`'s `lentOutput`); each input chunk, once decoded, goes to `inputDone`;
 * - `fresh`: new buffers, each call's bytes pushed as a view of one (as node:zlib does).
 */
class IsalGunzipDecompressor extends Transform {
  readonly #context: GunzipContext;
  readonly #chunkSize: number;
  readonly #mode: 'pooled' | 'lent' | 'fresh';
  readonly #pool: BufferPool | undefined;
  readonly #views: LentViewBuffers | undefined;
  readonly #inputDone: ((chunk: Uint8Array) => void) | undefined;
  #output: Buffer;
  #filled = 0;

  constructor(
    context: GunzipContext,
    chunkSize: number,
    mode: 'pooled' | 'lent' | 'fresh',
    inputDone: ((chunk: Uint8Array) => void) | undefined,
  ) {
    super();
    this.#context = context;
    this.#chunkSize = chunkSize;
    this.#mode = mode;
    this.#pool = mode === 'pooled' ? bufferPoolOf(chunkSize) : undefined;
    this.#views = mode === 'lent' ? lentViewBuffersOf(chunkSize) : undefined;
    this.#inputDone = inputDone;
    this.#output = this.#newOutput();
  }

  #newOutput(): Buffer {
    return this.#pool?.take() ?? this.#views?.take() ?? Buffer.allocUnsafeSlow(this.#chunkSize);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.#decode(chunk).then(
      () => {
        // Read to its end (no call is running): handed on to be reused, else garbage.
        if (this.#inputDone) this.#inputDone(chunk);
        else if (this.#pool) transientBuffers.note(chunk.byteLength);
        done();
      },
      (error: unknown) => done(error as Error),
    );
  }

  async #decode(chunk: Uint8Array): Promise<void> {
    let input = chunk;
    for (;;) {
      if (this.destroyed) return;
      const [written, read] = await this.#context.decompress(this.#output.subarray(this.#filled), input);
      input = input.subarray(read);
      if (written > 0 && this.#mode !== 'pooled') {
        const view = this.#output.subarray(this.#filled, this.#filled + written);
        this.#views?.lend(view);
        this.push(view);
      }
      this.#filled += written;
      if (this.#filled === this.#chunkSize) {
        if (this.#mode === 'pooled') this.push(this.#output);
        else this.#views?.close(this.#output);
        this.#output = this.#newOutput();
        this.#filled = 0;
        // The decoder may hold decoded bytes that did not fit: call it again, even without input.
        continue;
      }
      // Output room left and all input read: everything decodable so far is out.
      if (input.byteLength === 0) return;
    }
  }

  override _flush(done: (error?: Error | null) => void): void {
    const failure = this.#context.end();
    if (failure) {
      done(failure);
      return;
    }
    if (this.#mode === 'pooled') {
      // A pooled buffer handed on in part is never given back: it is left to the garbage collector.
      if (this.#filled > 0) this.push(this.#output.subarray(0, this.#filled));
      else this.#pool!.give(this.#output);
    } else {
      // The last lent buffer, partly filled, comes back once its views are released.
      this.#views?.close(this.#output);
    }
    done();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Freed now, or when a call still running returns.
    this.#context.free();
    callback(error);
  }
}

let zstdNapiBinding: ZstdNapiBinding | null | undefined;

/** zstd-napi's low-level binding (its `zstd-napi/binding` module), or null when it does not load. */
function loadZstdNapiBinding(): ZstdNapiBinding | null {
  if (zstdNapiBinding === undefined) {
    try {
      const binding = createRequire(import.meta.url)('zstd-napi/binding') as Partial<ZstdNapiBinding>;
      zstdNapiBinding = typeof binding.DCtx === 'function' ? (binding as ZstdNapiBinding) : null;
    } catch {
      zstdNapiBinding = null;
    }
  }
  return zstdNapiBinding;
}

/**
 * zstd decompression through zstd-napi's `ZSTD_decompressStream`, written into output buffers of
 * `chunkSize` bytes that are pushed once full (the last one at the end): zstd-napi's own stream pushes
 * a fresh 128 KiB buffer per call. Any series of frames, skippable ones included, is one stream; input
 * ending inside a frame is an error.
 */
class ZstdChunkedOutputDecompressor extends Transform {
  readonly #context: InstanceType<ZstdNapiBinding['DCtx']>;
  readonly #chunkSize: number;
  readonly #pool: BufferPool | undefined;
  #output: Buffer;
  #filled = 0;
  #inFrame = false;

  constructor(binding: ZstdNapiBinding, chunkSize: number, pooled: boolean) {
    super();
    this.#context = new binding.DCtx();
    this.#chunkSize = chunkSize;
    this.#pool = pooled ? bufferPoolOf(chunkSize) : undefined;
    this.#output = this.#newOutput();
  }

  #newOutput(): Buffer {
    return this.#pool?.take() ?? Buffer.allocUnsafeSlow(this.#chunkSize);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    try {
      let input: Uint8Array = chunk;
      for (;;) {
        const [hint, written, read] = this.#context.decompressStream(
          this.#output.subarray(this.#filled),
          input,
        );
        if (written === 0 && read === 0 && input.byteLength > 0) {
          throw new Error('the decoder made no progress');
        }
        this.#filled += written;
        input = input.subarray(read);
        this.#inFrame = hint !== 0;
        if (this.#filled === this.#chunkSize) {
          this.push(this.#output);
          this.#output = this.#newOutput();
          this.#filled = 0;
          // The decoder may hold decoded bytes that did not fit: call it again, even without input.
          continue;
        }
        // Output room left and all input read: everything decodable so far is out.
        if (input.byteLength === 0) break;
      }
    } catch (error) {
      done(new CorruptCompressedDataError(`zstd: ${(error as Error).message}`, { cause: error }));
      return;
    }
    // With pooled output (a recompression), the input chunks are this copy's main garbage.
    if (this.#pool) transientBuffers.note(chunk.byteLength);
    done();
  }

  override _flush(done: (error?: Error | null) => void): void {
    if (this.#inFrame) {
      done(new CorruptCompressedDataError('zstd: the data ends inside a frame'));
      return;
    }
    // A pooled buffer handed on in part is never given back: it is left to the garbage collector.
    if (this.#filled > 0) this.push(this.#output.subarray(0, this.#filled));
    done();
  }
}

/**
 * zstd decompression through the system's libzstd (`ZSTD_decompressStream`), each call on koffi's
 * asynchronous call threads (libuv's pool), one at a time, written into output buffers of `chunkSize`
 * bytes from the process-wide pool (`bufferPoolOf`) that are pushed once full (the last one at the end):
 * the reader gives them back (see `createDecompressor`'s `pooledOutput`). Any series of frames,
 * skippable ones included, is one stream; input ending inside a frame is an error. Each input chunk,
 * once decoded, goes to `inputDone` when given, else is noted to `transientBuffers`.
 */
class LibzstdDecompressor extends Transform {
  readonly #context: ZstdDecompressionContext;
  readonly #chunkSize: number;
  readonly #pool: BufferPool;
  #output: Buffer;
  #filled = 0;
  #inFrame = false;

  readonly #inputDone: ((chunk: Uint8Array) => void) | undefined;

  constructor(
    context: ZstdDecompressionContext,
    chunkSize: number,
    inputDone: ((chunk: Uint8Array) => void) | undefined,
  ) {
    super();
    this.#context = context;
    this.#chunkSize = chunkSize;
    this.#pool = bufferPoolOf(chunkSize);
    this.#output = this.#pool.take();
    this.#inputDone = inputDone;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.#decode(chunk).then(
      () => {
        // Read to its end (no call is running): handed on to be reused, else garbage.
        if (this.#inputDone) this.#inputDone(chunk);
        else transientBuffers.note(chunk.byteLength);
        done();
      },
      (error: unknown) =>
        done(new CorruptCompressedDataError(`zstd: ${(error as Error).message}`, { cause: error })),
    );
  }

  async #decode(chunk: Uint8Array): Promise<void> {
    let input = chunk;
    for (;;) {
      if (this.destroyed) return;
      const [hint, written, read] = await this.#context.decompress(
        this.#output.subarray(this.#filled),
        input,
      );
      if (written === 0 && read === 0 && input.byteLength > 0)
        throw new Error('the decoder made no progress');
      this.#filled += written;
      input = input.subarray(read);
      this.#inFrame = hint !== 0;
      if (this.#filled === this.#chunkSize) {
        this.push(this.#output);
        this.#output = this.#pool.take();
        this.#filled = 0;
        // The decoder may hold decoded bytes that did not fit: call it again, even without input.
        continue;
      }
      // Output room left and all input read: everything decodable so far is out.
      if (input.byteLength === 0) return;
    }
  }

  override _flush(done: (error?: Error | null) => void): void {
    if (this.#inFrame) {
      done(new CorruptCompressedDataError('zstd: the data ends inside a frame'));
      return;
    }
    // A pooled buffer handed on in part is never given back: it is left to the garbage collector.
    if (this.#filled > 0) this.push(this.#output.subarray(0, this.#filled));
    else this.#pool.give(this.#output);
    done();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // Freed now, or when a call still running returns.
    this.#context.free();
    callback(error);
  }
}

/**
 * The zstd implementation decompression uses: zstd-napi whenever it is installed, because node:zlib's
 * zstd decompressor (Node.js 22.15–22.23 at least) stops at the end of the first frame, and layers are
 * often several frames (zstd:chunked: one per chunk, plus skippable frames); node:zlib otherwise.
 * `GANTRY_ZSTD_IMPLEMENTATION` forces one, as for compression.
 */
export function zstdDecompressionImplementation(): ZstdImplementation | undefined {
  const wanted = process.env.GANTRY_ZSTD_IMPLEMENTATION;
  if (wanted === 'none') return undefined;
  if (wanted === 'node:zlib') return nodeZlibHasZstd() ? 'node:zlib' : undefined;
  if (loadZstdNapi()) return 'zstd-napi';
  return wanted === 'zstd-napi' ? undefined : nodeZlibHasZstd() ? 'node:zlib' : undefined;
}

/** An error of a decompressor that means "these bytes are not valid data of that format". */
export class CorruptCompressedDataError extends Error {
  readonly code = 'Z_DATA_ERROR';
}

type XzModule = { XzReadableStream: new (source: ReadableStream<Uint8Array>) => ReadableStream<Uint8Array> };
type Bzip2Module = () => NodeJS.ReadWriteStream;

/** Decompresses xz through xz-decompress (a web stream wrapping xz-embedded in WebAssembly). */
async function* xzDecompressing(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const { XzReadableStream } = createRequire(import.meta.url)('xz-decompress') as XzModule;
  const iterator = source[Symbol.asyncIterator]();
  const input = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await iterator.next();
      if (next.done) controller.close();
      else controller.enqueue(new Uint8Array(next.value));
    },
    async cancel() {
      await iterator.return?.();
    },
  });
  try {
    for await (const chunk of new XzReadableStream(input) as unknown as AsyncIterable<Uint8Array>) {
      yield chunk;
    }
  } catch (error) {
    if (error instanceof GantryError) throw error;
    throw new CorruptCompressedDataError(`xz: ${(error as Error).message}`, { cause: error });
  }
}

/** Decompresses bzip2 through unbzip2-stream (a classic through-stream, fed and drained chunk by chunk). */
async function* bzip2Decompressing(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const create = createRequire(import.meta.url)('unbzip2-stream') as Bzip2Module;
  const decoder = create();
  const output: Uint8Array[] = [];
  let failure: unknown;
  decoder.on('data', (chunk: Uint8Array) => output.push(chunk));
  decoder.on('error', (error: unknown) => {
    failure ??= error;
  });
  const check = (): void => {
    if (failure !== undefined) {
      throw new CorruptCompressedDataError(`bzip2: ${(failure as Error).message ?? String(failure)}`, {
        cause: failure,
      });
    }
  };
  for await (const chunk of source) {
    decoder.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) as unknown as string);
    check();
    while (output.length > 0) yield output.shift()!;
  }
  decoder.end();
  check();
  while (output.length > 0) yield output.shift()!;
}

/**
 * A pipeline stage compressing its input to `format`: gzip on several threads (`parallelGzipStage`,
 * like skopeo's pgzip); zstd as independent frames on several threads (`parallelZstdStage`) where
 * the system's libzstd loads (and `GANTRY_ZSTD_IMPLEMENTATION` names no other), else one stream
 * through `zstdImplementation()` (else `ERR_GANTRY_NOT_SUPPORTED`).
 */
export function compressingStage(
  format: CompressionFormat,
  level?: number,
): (source: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array> {
  if (format === 'gzip') return parallelGzipStage(level === undefined ? {} : { level });
  if (parallelZstdAvailable()) return parallelZstdStage({ level: level ?? defaultZstdLevel });
  const compressor = createCompressor(format, level);
  return (source) => throughTransform(source, compressor);
}

/**
 * The size of the blocks `compressingStage(format)` compresses one by one (its input is best given
 * in chunks of this size: each becomes a block as it is), or the default decompressed chunk size when
 * it compresses one stream.
 */
export function compressingBlockSize(format: CompressionFormat): number {
  if (format === 'gzip') return defaultGzipBlockSize;
  return parallelZstdAvailable() ? defaultZstdFrameSize : decompressedChunkSize;
}

/**
 * Reads the first bytes of `source` (at least enough to recognise a compression format), and returns
 * the detected compression, an iterable yielding every byte of `source`, the peeked ones included,
 * and the chunks that were read to peek (`peeked`, yielded first).
 */
export async function peekCompression(source: AsyncIterable<Uint8Array>): Promise<{
  compression: DetectedCompression;
  stream: AsyncIterable<Uint8Array>;
  peeked: readonly Uint8Array[];
}> {
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
  // The first chunk is usually long enough: look at it in place; otherwise copy only the bytes looked at.
  const prefix = peeked.length === 1 ? peeked[0]! : Buffer.concat(peeked, Math.min(length, sniffLength));
  async function* replay(): AsyncGenerator<Uint8Array, void, undefined> {
    try {
      // Handed on one by one and forgotten, so the first chunk is not kept for the whole stream.
      while (peeked.length > 0) yield peeked.shift()!;
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
  return { compression: detectCompression(prefix), stream: replay(), peeked: [...peeked] };
}

/**
 * Passes `source` through a Node.js transform (e.g. gzip) and yields the transform's output chunk by
 * chunk, as the transform pushed it, with backpressure; an error on either side rejects the iteration.
 * (An async iterator over a Readable would call `read()`, which joins every buffered chunk into a new
 * buffer: a decompressor pushes several chunks per input chunk, so that would copy every byte again.)
 */
export function throughTransform(
  source: AsyncIterable<Uint8Array>,
  transform: Duplex,
): AsyncGenerator<Uint8Array, void, undefined> {
  const output = pipeline(source, transform, () => {
    // Errors reach the consumer through the transform's 'error' event (readableChunks).
  }) as unknown as Duplex;
  return readableChunks(output);
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
