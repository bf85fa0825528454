import { createRequire } from 'node:module';
import type { LentOutputBuffers } from './lent-output-buffers.js';

/**
 * The system's zstd library (`libzstd.so.1`, Debian's `libzstd1`), called through koffi to compress
 * whole blocks as independent zstd frames (`ZSTD_compress2`) on koffi's asynchronous call threads
 * (libuv's pool), so several blocks of one layer compress at once and this thread stays free.
 */
export interface Libzstd {
  /**
   * `input` as one complete zstd frame (with its content size) at `level`, compressed off this thread.
   * With `outputs`, compressed into one of its buffers when the bound fits (the frame is then a chunk
   * lent by `outputs`), else into a fresh one.
   */
  frame(input: Uint8Array, level: number, outputs?: LentOutputBuffers): Promise<Buffer>;
  /** The most bytes `frame` may write for `length` bytes of input (`ZSTD_compressBound`). */
  frameBound(length: number): number;
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

/** libzstd's parameter numbers (`ZSTD_cParameter`, stable API). */
const compressionLevelParameter = 100;
const hashLogParameter = 102;
const chainLogParameter = 103;

/**
 * The parameters a frame at `level` is compressed with: the level, and at level 3 (zstd's and
 * skopeo's default) smaller match-finder tables than libzstd's own for level 3: 2^16 entries in the
 * hash table (instead of 2^17) and 2^15 in the second table of its "double fast" strategy (instead of
 * 2^16), so that they stay in the caches of small machines. Measured on 2 cores, 64 MiB of an
 * executable in 4 MiB frames (medians of 5 rounds): 0.28 s of CPU instead of 0.36 s (−22 %), for
 * 25.55 MB of output instead of 25.10 MB (+1.8 %; skopeo's klauspost/compress writes 25.10 MB at its
 * default). Level 2 would take 0.23 s for 26.51 MB (+5.6 %). The output is ordinary zstd: the
 * decoder never sees the compressor's tables. Other levels keep libzstd's own parameters.
 */
export function zstdParametersOf(level: number): Array<[parameter: number, value: number]> {
  const parameters: Array<[number, number]> = [[compressionLevelParameter, level]];
  if (level === 3) parameters.push([hashLogParameter, 16], [chainLogParameter, 15]);
  return parameters;
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
    frameBound(length) {
      return Number(compressBound(length));
    },
    frame(input, level, outputs) {
      let context: unknown;
      try {
        context = take(level);
      } catch (error) {
        return Promise.reject(error);
      }
      // Compressed into a buffer of the bound's size, handed on as the view of what was written (as
      // libdeflate's members are): copying it out at its real size would take this thread's time and
      // touch as much fresh memory, and the rest of the bound is never written, so never faulted in. A
      // buffer of `outputs` comes back to be compressed into again once the destination wrote the frame.
      const bound = Number(compressBound(input.byteLength));
      const lent = outputs !== undefined && bound <= outputs.size ? outputs.take() : undefined;
      const output = lent ?? Buffer.allocUnsafeSlow(bound);
      return new Promise<Buffer>((resolve, reject) => {
        compress.async(
          context,
          output,
          output.byteLength,
          input,
          input.byteLength,
          (error: unknown, result: number | bigint) => {
            giveBack(level, context);
            // `input` and `output` are referenced by this closure until the call returns.
            const written = Number(result);
            const failure =
              error ??
              (isError(result)
                ? new Error(`libzstd: ${String(errorName(result))}`)
                : written > output.byteLength
                  ? new Error('libzstd: output larger than its bound')
                  : undefined);
            if (failure !== undefined) {
              if (lent) outputs!.giveBack(lent);
              reject(failure);
            } else resolve(lent ? outputs!.lend(lent, written) : output.subarray(0, written));
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
