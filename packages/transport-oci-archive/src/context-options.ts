import { type TransportContext, transportOptionsOf } from '@gantry/core/transport';

/** The `oci-archive:` transport's settings in a `TransportContext`: `context.transportOptions['oci-archive']`. */
export interface OciArchiveContextOptions {
  /** A destination keeps uncompressed layers as they are instead of compressing them (`--dest-oci-accept-uncompressed-layers`). */
  acceptUncompressedLayers?: boolean;
}

/** Reads `context.transportOptions['oci-archive']`; throws `ERR_GANTRY_USAGE` naming a malformed member. */
export function ociArchiveContextOptions(context: TransportContext | undefined): OciArchiveContextOptions {
  return transportOptionsOf(context, 'oci-archive', {
    acceptUncompressedLayers: 'boolean',
  }) as OciArchiveContextOptions;
}
