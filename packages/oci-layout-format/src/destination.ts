/**
 * The rules an image destination of either layout transport follows, whatever it writes to (files or
 * tar entries): the properties it announces, refusing `@N` and signatures, reporting blob reuse, and
 * the states it can be in.
 */
import {
  type BlobInfo,
  type Digest,
  ErrorCodes,
  GantryError,
  type ImageDestinationProperties,
  MediaTypes,
  type ReusedBlob,
} from '@gantry/core/transport';
import type { IndexEntry } from './layout.js';

/**
 * The properties of a layout destination: OCI manifests and indexes only, layers compressed unless
 * `acceptUncompressedLayers` (the transport's option), foreign layer URLs kept, no signatures.
 */
export function layoutDestinationProperties(options: {
  acceptUncompressedLayers: boolean;
  hasThreadSafePutBlob: boolean;
}): ImageDestinationProperties {
  return {
    supportedManifestMimeTypes: [MediaTypes.OciManifest, MediaTypes.OciIndex],
    desiredLayerCompression: options.acceptUncompressedLayers ? 'preserve' : 'compress',
    acceptsForeignLayerURLs: true,
    mustMatchRuntimeOS: false,
    supportsSignatures: false,
    hasThreadSafePutBlob: options.hasThreadSafePutBlob,
    ignoresEmbeddedDockerReference: false,
  };
}

/** Refuses a destination reference with `@N` (it designates an existing entry): `ERR_GANTRY_INVALID_REFERENCE`. */
export function checkDestinationReference(reference: { sourceIndex: number }): void {
  if (reference.sourceIndex !== -1) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Destination reference must not contain a manifest index @${reference.sourceIndex}`,
    );
  }
}

/** Layouts store no signatures: any signature is refused with `ERR_GANTRY_NOT_SUPPORTED`. */
export function rejectSignatures(signatures: readonly Uint8Array[]): void {
  if (signatures.length > 0) {
    throw new GantryError(ErrorCodes.NotSupported, 'Pushing signatures for OCI images is not supported');
  }
}

/** The answer to `tryReusingBlob` for a blob found with `size`: reused, keeping the media type asked for. */
export function reusedBlob(info: BlobInfo, digest: Digest, size: number): ReusedBlob {
  const blob: BlobInfo = { digest, size };
  if (info.mediaType !== undefined) blob.mediaType = info.mediaType;
  return { reused: true, blob };
}

/**
 * Throws `ERR_GANTRY_INTERNAL` when a destination is used after `close()` or `commit()`, naming the
 * transport (`oci: image destination used after close()`).
 */
export function assertDestinationWritable(
  transportName: string,
  state: { closed: boolean; committed: boolean },
): void {
  if (state.closed) {
    throw new GantryError(ErrorCodes.Internal, `${transportName}: image destination used after close()`);
  }
  if (state.committed) {
    throw new GantryError(ErrorCodes.Internal, `${transportName}: image destination used after commit()`);
  }
}

/** The top-level manifest's entry at `commit()`; `ERR_GANTRY_INTERNAL` when none was written. */
export function requireTopLevelEntry(transportName: string, topLevel: IndexEntry | undefined): IndexEntry {
  if (!topLevel) {
    throw new GantryError(
      ErrorCodes.Internal,
      `${transportName}: commit() called before the top-level manifest was written`,
    );
  }
  return topLevel;
}
