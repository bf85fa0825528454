import { type TransportContext, transportOptionsOf } from '@gantry/core/transport';

/** The `dir:` transport's settings in a `TransportContext`: `context.transportOptions.dir`. */
export interface DirContextOptions {
  /** A destination compresses uncompressed layers (`--dest-compress`). */
  forceCompress?: boolean;
  /** A destination decompresses compressed layers (`--dest-decompress`). Not with `forceCompress`. */
  forceDecompress?: boolean;
}

/** Reads `context.transportOptions.dir`; throws `ERR_GANTRY_USAGE` naming a malformed member. */
export function dirContextOptions(context: TransportContext | undefined): DirContextOptions {
  return transportOptionsOf(context, 'dir', {
    forceCompress: 'boolean',
    forceDecompress: 'boolean',
  }) as DirContextOptions;
}
