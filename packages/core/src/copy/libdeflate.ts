import { loadKoffi } from '../koffi.js';
import type { LentOutputBuffers } from './lent-output-buffers.js';

/**
 * libdeflate (the system's `libdeflate.so.0`, Debian's `libdeflate0`), called through koffi: a
 * whole-buffer DEFLATE compressor that at its level 2 writes output ~4 % smaller than zlib's level 3
 * in about half the CPU time (measured on 1 MiB blocks of an executable). It has no streaming and no
 * preset dictionary, so `parallelGzipStage` gives it independent blocks and writes each as a gzip
 * member of its own. Calls run on koffi's asynchronous call threads (libuv's pool), never on this
 * thread.
 */
export interface Libdeflate {
  /**
   * `input` as one complete gzip member (header, deflate data, CRC-32 and length), compressed at
   * `level` (1–12; 0 stores it uncompressed) off this thread. With `outputs`, compressed into one of its
   * buffers when the bound fits (the member is then a chunk lent by `outputs`), else into a fresh one.
   */
  gzipMember(input: Uint8Array, level: number, outputs?: LentOutputBuffers): Promise<Buffer>;
  /** The most bytes `gzipMember` may write for `length` bytes of input at `level`. */
  gzipBound(length: number, level: number): number;
}

type KoffiFunction = ((...args: unknown[]) => unknown) & {
  async: (...args: unknown[]) => void;
};

interface KoffiModule {
  load(path: string): { func(signature: string): KoffiFunction };
}

/** libdeflate's highest level. */
export const maxLibdeflateLevel = 12;

let loaded: Libdeflate | null | undefined;

/** The shared library names tried, in order. */
const libraryNames = ['libdeflate.so.0', 'libdeflate.so'];

function load(): Libdeflate | null {
  const koffi = loadKoffi() as KoffiModule | null;
  if (koffi === null) return null;
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
  const allocCompressor = library.func('void *libdeflate_alloc_compressor(int compression_level)');
  const gzipCompress = library.func(
    'size_t libdeflate_gzip_compress(void *compressor, const void *in, size_t in_nbytes, void *out, size_t out_nbytes_avail)',
  );
  const gzipCompressBound = library.func(
    'size_t libdeflate_gzip_compress_bound(void *compressor, size_t in_nbytes)',
  );
  /**
   * Idle compressors by level. A compressor is not thread-safe: each call takes one for itself and gives
   * it back, so there are as many as calls ever ran at once (a few), each a few hundred KiB, kept for the
   * process's life.
   */
  const idle = new Map<number, unknown[]>();
  const take = (level: number): unknown => {
    const compressor = idle.get(level)?.pop() ?? allocCompressor(level);
    if (!compressor) throw new Error(`libdeflate could not allocate a level ${level} compressor`);
    return compressor;
  };
  const giveBack = (level: number, compressor: unknown): void => {
    const list = idle.get(level);
    if (list) list.push(compressor);
    else idle.set(level, [compressor]);
  };
  return {
    gzipBound(length, level) {
      const compressor = take(level);
      try {
        return Number(gzipCompressBound(compressor, length));
      } finally {
        giveBack(level, compressor);
      }
    },
    gzipMember(input, level, outputs) {
      const compressor = take(level);
      // Compressed into a buffer of the bound's size (or more), handed on as the view of what was
      // written: copying it out at its real size would take this thread's time and touch as much fresh
      // memory (the rest of the bound is never written, so never faulted in). A buffer of `outputs`
      // comes back to be compressed into again once the destination wrote the member.
      const bound = Number(gzipCompressBound(compressor, input.byteLength));
      const lent = outputs !== undefined && bound <= outputs.size ? outputs.take() : undefined;
      const output = lent ?? Buffer.allocUnsafeSlow(bound);
      return new Promise<Buffer>((resolve, reject) => {
        gzipCompress.async(
          compressor,
          input,
          input.byteLength,
          output,
          output.byteLength,
          (error: unknown, written: number | bigint) => {
            giveBack(level, compressor);
            // `input` and `output` are referenced by this closure until the call returns.
            const length = Number(written);
            if (error || length === 0) {
              if (lent) outputs!.giveBack(lent);
              reject(error ?? new Error('libdeflate: output larger than its bound'));
            } else resolve(lent ? outputs!.lend(lent, length) : output.subarray(0, length));
          },
        );
      });
    },
  };
}

/**
 * libdeflate when koffi and the library load (once per process), else null. `GANTRY_GZIP_IMPLEMENTATION`
 * set to `node:zlib` makes it null (gzip then uses node:zlib only).
 */
export function libdeflate(): Libdeflate | null {
  if (process.env.GANTRY_GZIP_IMPLEMENTATION === 'node:zlib') return null;
  if (loaded === undefined) loaded = load();
  return loaded;
}
