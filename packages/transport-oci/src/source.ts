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
  type ManifestBlob,
  type OperationOptions,
  parseDigest,
  pooledFileStream,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core/transport';
import {
  checkManifestMatchesEntry,
  describeFileSystemError,
  errorCode,
  type IndexEntry,
  instanceMediaType,
  type LayoutIndex,
  listInstanceMediaTypes,
  findIndexEntry as selectIndexEntry,
} from '@gantry/oci-layout-format';
import { ociContextOptions } from './context-options.js';
import {
  blobPath,
  checkLayoutVersion,
  guessManifestMediaType,
  layoutBlobDirectory,
  readIndex,
  readManifestBlob,
} from './layout.js';
import type { OciReference } from './reference.js';

/** The blob directories to read from, in order: the shared blob directory (when set), then the layout's. */
export function sourceBlobDirectories(reference: OciReference, context: TransportContext): string[] {
  const local = layoutBlobDirectory(reference.path);
  const shared = ociContextOptions(context).sharedBlobDirectory;
  return shared ? [shared, local] : [local];
}

/**
 * Reads `index.json` for `reference`, rejecting with `ERR_GANTRY_IMAGE_NOT_FOUND` and the system's
 * error, as skopeo words it (`open /x/index.json: no such file or directory`), when the layout has none.
 */
export async function readExistingIndex(reference: OciReference): Promise<LayoutIndex> {
  const index = (await readIndex(reference.path, { required: true })) as LayoutIndex;
  await checkLayoutVersion(reference.path);
  return index;
}

/**
 * The `index.json` entry a reference designates and its position (by name, `@N`, or the only image;
 * rules and errors in `@gantry/oci-layout-format` `findIndexEntry`).
 */
export function findIndexEntry(
  reference: OciReference,
  index: LayoutIndex,
): { entry: IndexEntry; position: number } {
  return selectIndexEntry(reference, index, {
    kind: 'OCI layout',
    transportName: 'oci',
    path: reference.path || '.',
  });
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
        `${description} ${digest} of ${this.reference.describeImage()} not found in OCI layout ${this.reference.path || '.'}`,
      );
    }
    return bytes;
  }

  /** Media types of the top-level list's instances, from the list itself (empty for a single image). */
  async #instanceMediaTypes(): Promise<Map<Digest, string>> {
    this.#instanceTypes ??= listInstanceMediaTypes(await this.getManifest());
    return this.#instanceTypes;
  }

  async getManifest(instanceDigest?: Digest, options?: OperationOptions): Promise<ManifestBlob> {
    this.#assertOpen();
    throwIfAborted(options?.signal);
    if (instanceDigest === undefined) {
      const bytes = await this.#readManifest(this.#entry.digest, 'manifest');
      checkManifestMatchesEntry(this.#entry, bytes, `OCI layout ${this.reference.path || '.'}`);
      const mediaType = this.#entry.mediaType !== '' ? this.#entry.mediaType : guessManifestMediaType(bytes);
      return { bytes, mediaType };
    }
    const digest = parseDigest(instanceDigest);
    const bytes = await this.#readManifest(digest, 'manifest instance');
    const mediaType = instanceMediaType(
      digest,
      bytes,
      await this.#instanceMediaTypes(),
      this.#index,
      guessManifestMediaType,
    );
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
        return {
          // Read into pooled buffers (`fileReadBuffers`) that a destination writing the chunks out gives
          // back, through the copy pipeline, to be read into again.
          stream: pooledFileStream(handle),
          size: stats.size,
        };
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
