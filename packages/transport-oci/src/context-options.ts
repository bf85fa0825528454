import { type TransportContext, transportOptionsOf } from '@gantry/core/transport';

/**
 * The `oci:` transport's settings in a `TransportContext`: `context.transportOptions.oci`.
 *
 * ```ts
 * const context: TransportContext = { transportOptions: { oci: { sharedBlobDirectory: '/srv/blobs' } satisfies OciContextOptions } };
 * ```
 */
export interface OciContextOptions {
  /**
   * A directory holding the blobs of several layouts (skopeo's `--src-shared-blob-dir` /
   * `--dest-shared-blob-dir`): a source reads blobs there first, a destination writes them there
   * instead of into the layout, and deleting an image never removes them.
   */
  sharedBlobDirectory?: string;
  /** A destination keeps uncompressed layers as they are instead of compressing them (`--dest-oci-accept-uncompressed-layers`). */
  acceptUncompressedLayers?: boolean;
}

/** Reads `context.transportOptions.oci`; throws `ERR_GANTRY_USAGE` naming a malformed member. */
export function ociContextOptions(context: TransportContext | undefined): OciContextOptions {
  return transportOptionsOf(context, 'oci', {
    sharedBlobDirectory: 'string',
    acceptUncompressedLayers: 'boolean',
  }) as OciContextOptions;
}
