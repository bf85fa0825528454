/**
 * Reading an image from an OCI layout.
 */
import { open } from 'node:fs/promises';
import {
  type BlobInfo,
  type BlobStream,
  type Digest,
  ErrorCodes,
  GantryError,
  type ImageSource,
  type ImageSourceProperties,
  isGantryError,
  isManifestListMediaType,
  type ManifestBlob,
  type OperationOptions,
  parseDigest,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core';
import { describeFileSystemError, errorCode } from './file-system.js';
import {
  blobPath,
  checkLayoutVersion,
  guessManifestMediaType,
  type IndexEntry,
  type LayoutIndex,
  layoutBlobDirectory,
  manifestReferences,
  readableEntryMediaTypes,
  readIndex,
  readManifestBlob,
} from './layout.js';
import type { OciReference } from './reference.js';

/** The blob directories to read from, in order: the shared blob directory (when set), then the layout's. */
export function sourceBlobDirectories(reference: OciReference, context: TransportContext): string[] {
  const local = layoutBlobDirectory(reference.path);
  const shared = context.ociSharedBlobDirectory;
  return shared ? [shared, local] : [local];
}

/**
 * Reads `index.json` for `reference`, rejecting with `ERR_GANTRY_IMAGE_NOT_FOUND` (naming the layout
 * and the image) when the layout has none.
 */
export async function readExistingIndex(reference: OciReference): Promise<LayoutIndex> {
  const index = await readIndex(reference.path);
  if (index === undefined) {
    throw new GantryError(
      ErrorCodes.ImageNotFound,
      `image ${reference.describeImage()} not found: ${reference.path || '.'} is not an OCI layout (it has no index.json)`,
    );
  }
  await checkLayoutVersion(reference.path);
  return index;
}

/**
 * The `index.json` entry a reference designates, as containers/image's `getManifestDescriptor`:
 * - a name: the entry whose `org.opencontainers.image.ref.name` is that name and whose type is a
 *   manifest or index (OCI or Docker); `ERR_GANTRY_IMAGE_NOT_FOUND` when none has the name,
 *   `ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE` when only entries of other types have it;
 * - `@N`: the N-th entry; `ERR_GANTRY_IMAGE_NOT_FOUND` when there are not that many;
 * - nothing: the only entry; `ERR_GANTRY_IMAGE_NOT_FOUND` when there is none,
 *   `ERR_GANTRY_INVALID_REFERENCE` when there are several (the user must choose one).
 */
export function findIndexEntry(
  reference: OciReference,
  index: LayoutIndex,
): { entry: IndexEntry; position: number } {
  const layout = reference.path || '.';
  if (reference.sourceIndex !== -1) {
    const entry = index.entries[reference.sourceIndex];
    if (entry === undefined) {
      throw new GantryError(
        ErrorCodes.ImageNotFound,
        `image @${reference.sourceIndex} not found in OCI layout ${layout}: index ${reference.sourceIndex} is too large, only ${index.entries.length} entries available`,
      );
    }
    return { entry, position: reference.sourceIndex };
  }
  if (reference.imageName !== '') {
    const unsupportedTypes: string[] = [];
    for (const [position, entry] of index.entries.entries()) {
      if (entry.referenceName !== reference.imageName) continue;
      if (readableEntryMediaTypes.includes(entry.mediaType)) return { entry, position };
      unsupportedTypes.push(entry.mediaType);
    }
    if (unsupportedTypes.length > 0) {
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        `image "${reference.imageName}" in OCI layout ${layout} has unsupported manifest MIME types ${JSON.stringify(unsupportedTypes)}`,
      );
    }
    throw new GantryError(
      ErrorCodes.ImageNotFound,
      `image "${reference.imageName}" not found in OCI layout ${layout}: no descriptor found for reference "${reference.imageName}"`,
    );
  }
  if (index.entries.length === 0) {
    throw new GantryError(
      ErrorCodes.ImageNotFound,
      `no image found in OCI layout ${layout}: index.json is empty`,
    );
  }
  if (index.entries.length > 1) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `more than one image in OCI layout ${layout} (${index.entries.length}), choose an image: oci:${layout}:<name> or oci:${layout}:@<index>`,
    );
  }
  return { entry: index.entries[0] as IndexEntry, position: 0 };
}

class OciImageSource implements ImageSource {
  readonly reference: OciReference;
  readonly properties: ImageSourceProperties = { hasThreadSafeGetBlob: true };
  readonly #index: LayoutIndex;
  readonly #entry: IndexEntry;
  readonly #blobDirectories: string[];
  #instanceTypes: Map<Digest, string> | undefined;
  #closed = false;

  constructor(reference: OciReference, index: LayoutIndex, entry: IndexEntry, blobDirectories: string[]) {
    this.reference = reference;
    this.#index = index;
    this.#entry = entry;
    this.#blobDirectories = blobDirectories;
  }

  #assertOpen(): void {
    if (this.#closed) throw new GantryError(ErrorCodes.Internal, 'oci: image source used after close()');
  }

  async #readManifest(digest: Digest, description: string): Promise<Uint8Array> {
    const bytes = await readManifestBlob(this.#blobDirectories, digest);
    if (bytes === undefined) {
      throw new GantryError(
        ErrorCodes.ImageNotFound,
        `${description} ${digest} of image ${this.reference.describeImage()} not found in OCI layout ${this.reference.path || '.'}`,
      );
    }
    return bytes;
  }

  /** Media types of the top-level list's instances, from the list itself (empty for a single image). */
  async #instanceMediaTypes(): Promise<Map<Digest, string>> {
    if (this.#instanceTypes) return this.#instanceTypes;
    const types = new Map<Digest, string>();
    const top = await this.getManifest();
    if (isManifestListMediaType(top.mediaType)) {
      try {
        for (const instance of manifestReferences(top.bytes, top.mediaType, 'manifest list').manifests) {
          if (instance.mediaType !== '') types.set(instance.digest, instance.mediaType);
        }
      } catch {
        // A malformed list: the copy pipeline reports it; fall back to guessing here.
      }
    }
    this.#instanceTypes = types;
    return types;
  }

  async getManifest(instanceDigest?: Digest, options?: OperationOptions): Promise<ManifestBlob> {
    this.#assertOpen();
    throwIfAborted(options?.signal);
    if (instanceDigest === undefined) {
      const bytes = await this.#readManifest(this.#entry.digest, 'manifest');
      const mediaType = this.#entry.mediaType !== '' ? this.#entry.mediaType : guessManifestMediaType(bytes);
      return { bytes, mediaType };
    }
    const digest = parseDigest(instanceDigest);
    const bytes = await this.#readManifest(digest, 'manifest instance');
    const mediaType =
      (await this.#instanceMediaTypes()).get(digest) ??
      this.#index.entries.find((entry) => entry.digest === digest && entry.mediaType !== '')?.mediaType ??
      guessManifestMediaType(bytes);
    return { bytes, mediaType };
  }

  async getBlob(info: BlobInfo, options?: OperationOptions): Promise<BlobStream> {
    this.#assertOpen();
    throwIfAborted(options?.signal);
    const digest = parseDigest(info.digest);
    for (const directory of this.#blobDirectories) {
      const filePath = blobPath(directory, digest);
      let handle: Awaited<ReturnType<typeof open>>;
      try {
        handle = await open(filePath, 'r');
      } catch (error) {
        if (errorCode(error) === 'ENOENT') continue;
        throw new GantryError(
          ErrorCodes.Internal,
          `opening blob ${filePath}: ${describeFileSystemError(error)}`,
          {
            cause: error,
          },
        );
      }
      try {
        const stats = await handle.stat();
        if (!stats.isFile()) {
          throw new GantryError(ErrorCodes.InvalidLayout, `blob ${filePath} is not a regular file`);
        }
        return { stream: handle.createReadStream({ autoClose: true }), size: stats.size };
      } catch (error) {
        await handle.close();
        if (isGantryError(error)) throw error;
        throw new GantryError(
          ErrorCodes.Internal,
          `reading blob ${filePath}: ${describeFileSystemError(error)}`,
          {
            cause: error,
          },
        );
      }
    }
    if (info.urls !== undefined && info.urls.length > 0) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `blob ${digest} is a foreign layer stored at ${info.urls.join(', ')} and not in OCI layout ${this.reference.path || '.'}; fetching foreign layers is not supported`,
      );
    }
    throw new GantryError(
      ErrorCodes.BlobNotFound,
      `blob ${digest} not found in OCI layout ${this.reference.path || '.'}${this.#blobDirectories.length > 1 ? ` nor in shared blob directory ${this.#blobDirectories[0]}` : ''}`,
    );
  }

  async getSignatures(_instanceDigest?: Digest, options?: OperationOptions): Promise<Uint8Array[]> {
    this.#assertOpen();
    throwIfAborted(options?.signal);
    return [];
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

/** Opens `reference` for reading. */
export async function openOciImageSource(
  reference: OciReference,
  context: TransportContext,
): Promise<ImageSource> {
  throwIfAborted(context.signal);
  const index = await readExistingIndex(reference);
  const { entry } = findIndexEntry(reference, index);
  return new OciImageSource(reference, index, entry, sourceBlobDirectories(reference, context));
}
