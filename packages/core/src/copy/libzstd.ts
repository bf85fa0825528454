import { createRequire } from 'node:module';
import { scratchBuffer } from './buffer-pool.js';

/**
 * The system's zstd library (`libzstd.so.1`, Debian's `libzstd1`), called through koffi to compress
 * whole blocks as independent zstd frames (`ZSTD_compressCCtx`) on koffi's asynchronous call threads
 * (libuv's pool), so several blocks of one layer compress at once and this thread stays free.
 */
export interface Libzstd {
  /**
   * `input` as one complete zstd frame (with its content size) at `level`, compressed off this thread.
   * `wholeBlock`: `input` has the usual block size, so the scratch output buffer is pooled.
   */
  frame(input: Uint8Array, level: number, wholeBlock: boolean): Promise<Buffer>;
}

type KoffiFunction = ((...args: unknown[]) => unknown) & {
  async: (...args: unknown[]) => void;
};

interface KoffiModule {
  load(path: string): { func(signature: string): KoffiFunction };
}

let loaded: Libzstd | null | undefined;

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
  const compressBound = library.func('size_t ZSTD_compressBound(size_t srcSize)');
  const compress = library.func(
    'size_t ZSTD_compressCCtx(void *cctx, void *dst, size_t dstCapacity, const void *src, size_t srcSize, int compressionLevel)',
  );
  const isError = library.func('unsigned int ZSTD_isError(size_t code)');
  const errorName = library.func('const char *ZSTD_getErrorName(size_t code)');
  /** Idle compression contexts (not thread-safe: one per running call), kept for the process's life. */
  const idle: unknown[] = [];
  return {
    frame(input, level, wholeBlock) {
      const context = idle.pop() ?? createContext();
      if (!context) return Promise.reject(new Error('libzstd could not allocate a compression context'));
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
          level,
          (error: unknown, written: number | bigint) => {
            idle.push(context);
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
