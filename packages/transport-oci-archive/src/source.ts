/**
 * Reading an image from an OCI archive: the tar headers are indexed once when the source opens, the image
 * is chosen in `index.json` (by name, `@N`, or the only one; rules as `oci:`) and its top-level manifest
 * read; then manifests and blobs are read from their offsets in the archive. Nothing is extracted.
 *
 * Safety beyond the tar checks: manifests are read only up to 4 MiB and must have the digest that names
 * them (the top-level one the digest `index.json` gives); a blob whose size in the archive differs from
 * the size the manifest gives is refused with `ERR_GANTRY_SIZE_MISMATCH` before any byte is read.
 */
import {
  type BlobInfo,
  type BlobStream,
  type Digest,
  ErrorCodes,
  GantryError,
  guessManifestMediaType,
  type ImageSource,
  type ImageSourceProperties,
  type ManifestBlob,
  type OperationOptions,
  parseDigest,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core/transport';
import {
  checkManifestMatchesEntry,
  findIndexEntry,
  instanceMediaType,
  listInstanceMediaTypes,
} from '@gantry/oci-layout-format';
import { type OciArchiveContents, openOciArchive } from './archive.js';
import type { OciArchiveReference } from './reference.js';

async function readManifest(
  archive: OciArchiveContents,
  reference: OciArchiveReference,
  digest: Digest,
  description: string,
  signal: AbortSignal | undefined,
): Promise<Uint8Array> {
  const bytes = await archive.readManifest(digest, { signal });
  if (bytes === undefined) {
    throw new GantryError(
      ErrorCodes.ImageNotFound,
      `${description} ${digest} of ${reference.describeImage()} not found in OCI archive ${archive.path}`,
    );
  }
  return bytes;
}

class OciArchiveImageSource implements ImageSource {
  readonly reference: OciArchiveReference;
  readonly properties: ImageSourceProperties = { hasThreadSafeGetBlob: true };
  readonly #archive: OciArchiveContents;
  readonly #topLevel: ManifestBlob;
  #instanceTypes: Map<Digest, string> | undefined;
  #closed = false;

  constructor(reference: OciArchiveReference, archive: OciArchiveContents, topLevel: ManifestBlob) {
    this.reference = reference;
    this.#archive = archive;
    this.#topLevel = topLevel;
  }

  #assertOpen(): void {
    if (this.#closed)
      throw new GantryError(ErrorCodes.Internal, 'oci-archive: image source used after close()');
  }

  #readManifest(digest: Digest, description: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
    return readManifest(this.#archive, this.reference, digest, description, signal);
  }

  /** Media types of the top-level list's instances, from the list itself (empty for a single image). */
  async #instanceMediaTypes(): Promise<Map<Digest, string>> {
    this.#instanceTypes ??= listInstanceMediaTypes(await this.getManifest());
    return this.#instanceTypes;
  }

  async getManifest(instanceDigest?: Digest, options?: OperationOptions): Promise<ManifestBlob> {
    this.#assertOpen();
    throwIfAborted(options?.signal);
    if (instanceDigest === undefined)
      return { bytes: this.#topLevel.bytes, mediaType: this.#topLevel.mediaType };
    const digest = parseDigest(instanceDigest);
    const bytes = await this.#readManifest(digest, 'manifest instance', options?.signal);
    const mediaType = instanceMediaType(digest, bytes, await this.#instanceMediaTypes(), this.#archive.index);
    return { bytes, mediaType };
  }

  async getBlob(info: BlobInfo, options?: OperationOptions): Promise<BlobStream> {
    this.#assertOpen();
    throwIfAborted(options?.signal);
    const digest = parseDigest(info.digest);
    const size = this.#archive.blobSize(digest);
    if (size === undefined) {
      if (info.urls !== undefined && info.urls.length > 0) {
        throw new GantryError(
          ErrorCodes.NotSupported,
          `blob ${digest} is a foreign layer stored at ${info.urls.join(', ')} and not in OCI archive ${this.#archive.path}; fetching foreign layers is not supported`,
        );
      }
      throw new GantryError(
        ErrorCodes.BlobNotFound,
        `blob ${digest} not found in OCI archive ${this.#archive.path}`,
      );
    }
    if (info.size >= 0 && info.size !== size) {
      throw new GantryError(
        ErrorCodes.SizeMismatch,
        `blob ${digest} in OCI archive ${this.#archive.path}: size mismatch: the archive holds ${size} bytes, the manifest says ${info.size}`,
      );
    }
    return { stream: this.#archive.openBlob(digest, { signal: options?.signal }), size };
  }

  async getSignatures(_instanceDigest?: Digest, options?: OperationOptions): Promise<Uint8Array[]> {
    this.#assertOpen();
    throwIfAborted(options?.signal);
    return [];
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#archive.close();
  }
}

/** Opens `reference` for reading: indexes the archive and selects the image. */
export async function openOciArchiveSource(
  reference: OciArchiveReference,
  context: TransportContext,
): Promise<ImageSource> {
  throwIfAborted(context.signal);
  const archive = await openOciArchive(reference.resolvedPath, {
    signal: context.signal,
    temporaryDirectory: context.temporaryDirectory,
  });
  try {
    const { entry } = findIndexEntry(reference, archive.index, {
      kind: 'OCI archive',
      transportName: 'oci-archive',
      path: reference.path,
    });
    // The top-level manifest is read now: a missing or corrupt one fails the opening, not a later call.
    const bytes = await readManifest(archive, reference, entry.digest, 'manifest', context.signal);
    checkManifestMatchesEntry(entry, bytes, `OCI archive ${reference.path}`);
    const mediaType = entry.mediaType !== '' ? entry.mediaType : guessManifestMediaType(bytes);
    return new OciArchiveImageSource(reference, archive, { bytes, mediaType });
  } catch (error) {
    await archive.close();
    throw error;
  }
}
