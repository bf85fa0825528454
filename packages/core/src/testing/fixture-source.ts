import type { Digest } from '../digest.js';
import { ErrorCodes, GantryError, throwIfAborted } from '../errors.js';
import type {
  BlobInfo,
  BlobStream,
  ImageDestination,
  ImageReference,
  ImageSource,
  ManifestBlob,
  OperationOptions,
} from '../transport/contract.js';
import type { FixtureImage } from './fixture-types.js';

/** Signatures to serve or write with a fixture: for the top-level image and per instance digest. */
export interface FixtureSignatures {
  /** Signatures of the top-level manifest. */
  signatures?: Uint8Array[];
  /** Signatures of list instances, by instance manifest digest. */
  instanceSignatures?: ReadonlyMap<Digest, Uint8Array[]>;
}

/**
 * An in-memory `ImageSource` serving a fixture, for copy pipeline tests. Manifests come from memory,
 * blobs are streamed from the fixture's files.
 *
 * Rules: `getManifest()` returns the top-level manifest, `getManifest(digest)` any manifest of the fixture
 * (else `ERR_GANTRY_IMAGE_NOT_FOUND`); `getBlob` serves configs and layers (else `ERR_GANTRY_BLOB_NOT_FOUND`);
 * `getSignatures` returns the given signatures or none; calls after `close()` reject with
 * `ERR_GANTRY_INTERNAL`.
 */
export function createFixtureImageSource(
  image: FixtureImage,
  reference: ImageReference,
  signatures: FixtureSignatures = {},
): ImageSource {
  let closed = false;
  const checkOpen = (options?: OperationOptions) => {
    if (closed) throw new GantryError(ErrorCodes.Internal, 'fixture image source used after close()');
    throwIfAborted(options?.signal);
  };
  return {
    reference,
    properties: { hasThreadSafeGetBlob: true },
    async getManifest(instanceDigest?: Digest, options?: OperationOptions): Promise<ManifestBlob> {
      checkOpen(options);
      if (instanceDigest === undefined) {
        return { bytes: image.topLevel.bytes, mediaType: image.topLevel.mediaType };
      }
      const manifest = image.manifests.get(instanceDigest);
      if (!manifest) {
        throw new GantryError(ErrorCodes.ImageNotFound, `fixture image has no manifest ${instanceDigest}`);
      }
      return { bytes: manifest.bytes, mediaType: manifest.mediaType };
    },
    async getBlob(info: BlobInfo, options?: OperationOptions): Promise<BlobStream> {
      checkOpen(options);
      const blob = image.blobs.get(info.digest);
      if (!blob) throw new GantryError(ErrorCodes.BlobNotFound, `fixture image has no blob ${info.digest}`);
      return { stream: blob.open(), size: blob.size };
    },
    async getSignatures(instanceDigest?: Digest, options?: OperationOptions): Promise<Uint8Array[]> {
      checkOpen(options);
      const found =
        instanceDigest === undefined
          ? signatures.signatures
          : signatures.instanceSignatures?.get(instanceDigest);
      return found ? [...found] : [];
    },
    async close(): Promise<void> {
      closed = true;
    },
  };
}

/** Options of `writeFixtureToDestination`. */
export interface WriteFixtureOptions extends FixtureSignatures {
  signal?: AbortSignal;
  /** Whether to call `commit()` (default true); false tests that `close()` alone discards the image. */
  commit?: boolean;
}

/**
 * Writes a fixture through an `ImageDestination` in the contract's call order: for each image, its
 * layers then its config (`putBlob`, each digest once); the instance manifests (with their digest) and
 * then the top-level manifest; signatures when given (instances, then top level); `commit()`; and
 * `close()` always, also after a failure.
 *
 * Rules: `putBlob` must report the digest and size it was given, else this rejects with
 * `ERR_GANTRY_DIGEST_MISMATCH` / `ERR_GANTRY_SIZE_MISMATCH`.
 */
export async function writeFixtureToDestination(
  image: FixtureImage,
  destination: ImageDestination,
  options: WriteFixtureOptions = {},
): Promise<void> {
  const signal = options.signal;
  try {
    const written = new Set<Digest>();
    for (const single of image.images) {
      for (const [digest, isConfig] of [
        ...single.layerDigests.map((layer) => [layer, false] as const),
        [single.configDigest, true] as const,
      ]) {
        if (written.has(digest)) continue;
        written.add(digest);
        const blob = image.blobs.get(digest);
        if (!blob) throw new GantryError(ErrorCodes.BlobNotFound, `fixture image has no blob ${digest}`);
        throwIfAborted(signal);
        const stored = await destination.putBlob(
          blob.open(),
          { digest, size: blob.size, mediaType: blob.mediaType },
          { isConfig, signal },
        );
        if (stored.digest !== digest) {
          throw new GantryError(
            ErrorCodes.DigestMismatch,
            `putBlob of ${digest} reported digest ${stored.digest} instead`,
          );
        }
        if (stored.size !== blob.size) {
          throw new GantryError(
            ErrorCodes.SizeMismatch,
            `putBlob of ${digest} reported size ${stored.size} instead of ${blob.size}`,
          );
        }
      }
    }
    const isList = !image.images.some((single) => single.manifestDigest === image.topLevel.digest);
    if (isList) {
      for (const single of image.images) {
        const manifest = image.manifests.get(single.manifestDigest)!;
        await destination.putManifest(manifest.bytes, manifest.mediaType, single.manifestDigest, { signal });
      }
    }
    await destination.putManifest(image.topLevel.bytes, image.topLevel.mediaType, undefined, { signal });
    if (isList && options.instanceSignatures) {
      for (const single of image.images) {
        const instanceSignatures = options.instanceSignatures.get(single.manifestDigest);
        if (instanceSignatures)
          await destination.putSignatures(instanceSignatures, single.manifestDigest, { signal });
      }
    }
    if (options.signatures) await destination.putSignatures(options.signatures, undefined, { signal });
    if (options.commit !== false) await destination.commit({ signal });
  } finally {
    await destination.close();
  }
}
