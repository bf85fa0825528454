/**
 * Compressed archives and layers: recognising gzip, zstd, bzip2 and xz by their magic numbers, and
 * decompressing them as a stream, for every archive reader (`openTarArchive` reads compressed tar files
 * through this; docker-save-format uses it for compressed layer files).
 *
 * Decompression is core's (`createDecompressor` of `@gantry/core/transport`, the same code that reads
 * compressed layers in a copy): gzip by Node's zlib, zstd by zstd-napi or Node's zlib, xz by
 * xz-decompress (WebAssembly), bzip2 by unbzip2-stream; no system command is run. Corrupt or truncated
 * data fails the stream with `ERR_GANTRY_INVALID_LAYOUT` naming the data; zstd without an implementation
 * is `ERR_GANTRY_NOT_SUPPORTED`.
 */
import { Duplex, pipeline, Readable } from 'node:stream';
import {
  createDecompressor,
  detectCompression,
  ErrorCodes,
  GantryError,
  isGantryError,
} from '@gantry/core/transport';

/** A compression recognised by its magic number; `none` for anything else. */
export type ArchiveCompression = 'gzip' | 'zstd' | 'bzip2' | 'xz' | 'none';

/** How many leading bytes `detectArchiveCompression` needs. */
export const compressionMagicLength = 6;

/** Recognises gzip, zstd, bzip2 and xz by their magic numbers. */
export function detectArchiveCompression(prefix: Uint8Array): ArchiveCompression {
  return detectCompression(prefix);
}

/** A stream decompressing `compression`; `what` names the data in messages (`archive x.tar.xz`). */
export function createArchiveDecompressor(
  compression: Exclude<ArchiveCompression, 'none'>,
  what: string,
): Duplex {
  return Duplex.from(async function* decompress(source: AsyncIterable<Uint8Array>) {
    let sourceFailure: unknown;
    async function* watched(): AsyncGenerator<Uint8Array, void, undefined> {
      try {
        yield* source;
      } catch (error) {
        sourceFailure = error;
        throw error;
      }
    }
    const decompressor = createDecompressor(compression);
    const output = pipeline(Readable.from(watched(), { objectMode: false }), decompressor, () => {
      // Failures reach the loop below through the decompressor.
    }) as unknown as Duplex;
    try {
      for await (const chunk of output) yield chunk as Uint8Array;
    } catch (error) {
      if (error === sourceFailure || isGantryError(error) || (error as Error)?.name === 'AbortError')
        throw error;
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `${what}: corrupt or truncated ${compression} data: ${(error as Error)?.message ?? String(error)}`,
        { cause: error },
      );
    }
  });
}
