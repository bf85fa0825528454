import { createRequire } from 'node:module';
import { scratchBuffer } from './buffer-pool.js';

/**
 * The system's zstd library (`libzstd.so.1`, Debian's `libzstd1`), called through koffi to compress
 * whole blocks as independent zstd frames (`ZSTD_compress2`) on koffi's asynchronous call threads
 * (libuv's pool), so several blocks of one layer compress at once and this thread stays free.
 */
export interface Libzstd {
  /**
   * `input` as one complete zstd frame (with its content size) at `level`, compressed off this thread.
   * `wholeBlock`: `input` has the usual block size, so the scratch output buffer is pooled.
   */
  frame(input: Uint8Array, level: number, wholeBlock: boolean): Promise<Buffer>;
  /**
   * A new streaming decompression context (`ZSTD_DCtx`), for one stream: each of its calls runs on
   * koffi's asynchronous call threads, one at a time. Give it up with `free()` once done (also after
   * an error).
   */
  decompressionContext(): ZstdDecompressionContext;
}

/** A streaming zstd decoder whose calls run off this thread (see `Libzstd.decompressionContext`). */
export interface ZstdDecompressionContext {
  /**
   * One `ZSTD_decompressStream` call: decodes from `input` into `output`, resolving to zstd's hint
   * (0 at the end of a frame), the bytes written and the bytes read. Rejects with the decoder's error
   * name when the data is not valid zstd. Neither buffer may be touched until it settles.
   */
  decompress(output: Uint8Array, input: Uint8Array): Promise<[hint: number, written: number, read: number]>;
  /**
   * Gives the context up (once; later calls of `decompress` reject): it is reset and kept for the next
   * stream (a few are kept), else freed.
   */
  free(): void;
}

type KoffiFunction = ((...args: unknown[]) => unknown) & {
  async: (...args: unknown[]) => void;
};

interface KoffiModule {
  load(path: string): { func(signature: string): KoffiFunction };
}

let loaded: Libzstd | null | undefined;

/** libzstd's parameter number of the compression level (`ZSTD_c_compressionLevel`, stable API). */
const compressionLevelParameter = 100;

/**
 * The parameters a frame at `level` is compressed with: the level alone, so libzstd's own parameters
 * for it (at level 3, zstd's and skopeo's default: the "double fast" strategy with 2^17 hash and 2^16
 * chain entries, matches of 5 bytes or more). Measured on the recompression benchmark's 8 × 64 MiB of
 * an executable in 4 MiB frames, against skopeo's 199.47 MB (klauspost/compress at its default):
 * libzstd's level 3 writes 198.52 MB (99.5 %); smaller tables (2^16 and 2^15 entries) take ~10–15 %
 * less CPU but write 201.75 MB (101.1 %), more than skopeo, which Gantry's output must not be.
 */
export function zstdParametersOf(level: number): Array<[parameter: number, value: number]> {
  return [[compressionLevelParameter, level]];
}

const libraryNames = ['libzstd.so.1', 'libzstd.so'];

function load(): Libzstd | null {
  let koffi: KoffiModule;
  try {
    koffi = createRequire(import.meta.url)('koffi') as KoffiModule;
  } catch {
    return null;
  }
  let library: ReturnType<KoffiModule['load']> | undefined;
  for (const name of libraryNames) {
    try {
      library = koffi.load(name);
      break;
    } catch {
      // Not installed under this name: try the next.
    }
  }
  if (!library) return null;
  const createContext = library.func('void *ZSTD_createCCtx(void)');
  const setParameter = library.func('size_t ZSTD_CCtx_setParameter(void *cctx, int param, int value)');
  const compressBound = library.func('size_t ZSTD_compressBound(size_t srcSize)');
  const compress = library.func(
    'size_t ZSTD_compress2(void *cctx, void *dst, size_t dstCapacity, const void *src, size_t srcSize)',
  );
  const isError = library.func('unsigned int ZSTD_isError(size_t code)');
  const createDecompressionContext = library.func('void *ZSTD_createDCtx(void)');
  const freeDecompressionContext = library.func('size_t ZSTD_freeDCtx(void *dctx)');
  const resetDecompressionContext = library.func('size_t ZSTD_DCtx_reset(void *dctx, int reset)');
  /** `ZSTD_reset_session_only`: forget the stream, keep the parameters and the buffers. */
  const resetSessionOnly = 1;
  /**
   * Idle decompression contexts, reset: a stream takes one and gives it back once done, so that the
   * decoder's window buffers (allocated by the first call, on a pool thread) are reused stream after
   * stream instead of allocated and freed again in the pool threads' malloc arenas.
   */
  const idleDecompressionContexts: unknown[] = [];
  const keptDecompressionContexts = 2;
  const release = (context: unknown): void => {
    if (
      idleDecompressionContexts.length < keptDecompressionContexts &&
      !isError(resetDecompressionContext(context, resetSessionOnly))
    ) {
      idleDecompressionContexts.push(context);
    } else {
      freeDecompressionContext(context);
    }
  };
  // The "simple arguments" form of ZSTD_decompressStream (exported by libzstd since 1.4): positions as
  // size_t pointers instead of ZSTD_inBuffer and ZSTD_outBuffer structures holding pointers.
  const decompressStream = library.func(
    'size_t ZSTD_decompressStream_simpleArgs(void *dctx, void *dst, size_t dstCapacity, _Inout_ size_t *dstPos, const void *src, size_t srcSize, _Inout_ size_t *srcPos)',
  );
  const errorName = library.func('const char *ZSTD_getErrorName(size_t code)');
  /**
   * Idle compression contexts by level, their parameters set (`zstdParametersOf`). A context is not
   * thread-safe: each running call takes one for itself, so there are as many as calls ever ran at
   * once (a few), kept for the process's life.
   */
  const idle = new Map<number, unknown[]>();
  const take = (level: number): unknown => {
    const existing = idle.get(level)?.pop();
    if (existing) return existing;
    const context = createContext();
    if (!context) throw new Error('libzstd could not allocate a compression context');
    for (const [parameter, value] of zstdParametersOf(level)) {
      const result = setParameter(context, parameter, value);
      if (isError(result)) throw new Error(`libzstd: ${String(errorName(result))}`);
    }
    return context;
  };
  const giveBack = (level: number, context: unknown): void => {
    const list = idle.get(level);
    if (list) list.push(context);
    else idle.set(level, [context]);
  };
  return {
    decompressionContext() {
      let context: unknown = idleDecompressionContexts.pop() ?? createDecompressionContext();
      if (!context) throw new Error('libzstd could not allocate a decompression context');
      let busy = false;
      return {
        decompress(output, input) {
          if (!context) return Promise.reject(new Error('libzstd: the decompression context was freed'));
          if (busy) return Promise.reject(new Error('libzstd: a decompression call is already running'));
          busy = true;
          const written = [0];
          const read = [0];
          const current = context;
          return new Promise((resolve, reject) => {
            decompressStream.async(
              current,
              output,
              output.byteLength,
              written,
              input,
              input.byteLength,
              read,
              (error: unknown, result: number | bigint) => {
                busy = false;
                // A context given up while the call ran (the stream was destroyed) is released now.
                if (!context) release(current);
                if (error) reject(error);
                else if (isError(result)) reject(new Error(String(errorName(result))));
                else resolve([Number(result), Number(written[0]), Number(read[0])]);
              },
            );
          });
        },
        free() {
          if (!context) return;
          const current = context;
          context = undefined;
          if (!busy) release(current);
        },
      };
    },
    frame(input, level, wholeBlock) {
      let context: unknown;
      try {
        context = take(level);
      } catch (error) {
        return Promise.reject(error);
      }
      // Compressed into a pooled buffer of the bound's size, then copied out at its real size.
      const scratch = scratchBuffer(Number(compressBound(input.byteLength)), wholeBlock);
      const output = scratch.buffer;
      return new Promise<Buffer>((resolve, reject) => {
        compress.async(
          context,
          output,
          output.byteLength,
          input,
          input.byteLength,
          (error: unknown, written: number | bigint) => {
            giveBack(level, context);
            // `input` and `output` are referenced by this closure until the call returns.
            if (error) reject(error);
            else if (isError(written)) reject(new Error(`libzstd: ${String(errorName(written))}`));
            else if (Number(written) > output.byteLength)
              reject(new Error('libzstd: output larger than its bound'));
            // Copied out at its real size (about a third of the bound for layers), so that the
            // bound-sized scratch goes back to the pool instead of waiting for the garbage collector.
            else resolve(Buffer.from(output.subarray(0, Number(written))));
            scratch.give();
          },
        );
      });
    },
  };
}

/**
 * libzstd when koffi and the library load (once per process), else null. `GANTRY_ZSTD_IMPLEMENTATION`
 * set to anything but `libzstd` makes it null (zstd then streams through `zstdImplementation()`).
 */
export function libzstd(): Libzstd | null {
  const wanted = process.env.GANTRY_ZSTD_IMPLEMENTATION;
  if (wanted !== undefined && wanted !== '' && wanted !== 'libzstd') return null;
  if (loaded === undefined) loaded = load();
  return loaded;
}
