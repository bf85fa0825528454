/**
 * Reading an image from a `docker save` archive, as containers/image's docker/internal/tarfile source does,
 * without extracting anything: the tar headers are indexed once and blobs are streamed from their offsets.
 *
 * - The manifest is generated: Docker schema2, config `application/vnd.docker.container.image.v1+json`,
 *   layers `application/vnd.docker.image.rootfs.diff.tar.gzip` (as containers/image, although uncompressed) whose digests are the config's DiffIDs and whose
 *   sizes are the uncompressed sizes (Go `json.Marshal` form, byte-identical to skopeo's).
 * - `getBlob(config digest)` returns the config; `getBlob(DiffID)` the layer, decompressed when stored
 *   compressed. Layer bytes are not hashed on open (that would read every layer to inspect an image): the
 *   copy pipeline verifies them against the DiffID while streaming.
 * - No signatures; no manifest lists.
 */
import { Readable } from 'node:stream';
import {
  type BlobInfo,
  type BlobStream,
  type Digest,
  ErrorCodes,
  GantryError,
  type ImageSource,
  type ImageSourceProperties,
  type ManifestBlob,
  MediaTypes,
  type OperationOptions,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core';
import {
  type DockerArchiveImage,
  type DockerArchiveReader,
  openDockerArchive,
} from '@gantry/docker-save-format';
import type { DockerArchiveReference } from './reference.js';

class DockerArchiveImageSource implements ImageSource {
  readonly reference: DockerArchiveReference;
  readonly properties: ImageSourceProperties = Object.freeze({ hasThreadSafeGetBlob: true });
  readonly #archive: DockerArchiveReader;
  readonly #image: DockerArchiveImage;
  readonly #contextSignal: AbortSignal | undefined;
  #closed = false;

  constructor(
    reference: DockerArchiveReference,
    archive: DockerArchiveReader,
    image: DockerArchiveImage,
    context: TransportContext,
  ) {
    this.reference = reference;
    this.#archive = archive;
    this.#image = image;
    this.#contextSignal = context.signal;
  }

  #begin(options: OperationOptions | undefined): AbortSignal | undefined {
    if (this.#closed)
      throw new GantryError(ErrorCodes.Internal, 'docker-archive image source used after close()');
    const signals = [this.#contextSignal, options?.signal].filter((signal) => signal !== undefined);
    const signal = signals.length <= 1 ? signals[0] : AbortSignal.any(signals);
    throwIfAborted(signal);
    return signal;
  }

  /** The loaded image (manifest item, config, layers). */
  get image(): DockerArchiveImage {
    return this.#image;
  }

  async getManifest(instanceDigest?: Digest, options?: OperationOptions): Promise<ManifestBlob> {
    this.#begin(options);
    if (instanceDigest !== undefined) {
      throw new GantryError(
        ErrorCodes.ImageNotFound,
        `manifest ${instanceDigest} not found: docker-archive: images are not manifest lists`,
      );
    }
    return { bytes: new Uint8Array(this.#image.manifestBytes), mediaType: MediaTypes.DockerManifest };
  }

  async getBlob(info: BlobInfo, options?: OperationOptions): Promise<BlobStream> {
    const signal = this.#begin(options);
    if (info.digest === this.#image.configDigest) {
      return { stream: Readable.from([this.#image.configBytes]), size: this.#image.configBytes.length };
    }
    const layer = this.#image.layers.find((candidate) => candidate.diffId === info.digest);
    if (!layer) {
      throw new GantryError(
        ErrorCodes.BlobNotFound,
        `blob ${info.digest} is not part of the image in ${this.#archive.description}`,
      );
    }
    return this.#archive.openLayer(layer, signal ? { signal } : {});
  }

  async getSignatures(_instanceDigest?: Digest, options?: OperationOptions): Promise<Uint8Array[]> {
    this.#begin(options);
    return [];
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#archive.close();
  }
}

/**
 * Opens the image `reference` names: the item tagged `reference.tag`, the item `@sourceIndex`, or the only
 * item. `ERR_GANTRY_IMAGE_NOT_FOUND` when the archive does not exist or has no such image;
 * `ERR_GANTRY_INVALID_LAYOUT` for malformed or hostile archives.
 */
export async function openDockerArchiveImageSource(
  reference: DockerArchiveReference,
  context: TransportContext,
): Promise<ImageSource & { readonly image: DockerArchiveImage }> {
  throwIfAborted(context.signal);
  const archive = await openDockerArchive(reference.path, {
    ...(context.signal ? { signal: context.signal } : {}),
    ...(context.temporaryDirectory ? { temporaryDirectory: context.temporaryDirectory } : {}),
  });
  try {
    const { index } = archive.chooseImage(reference.tag, reference.sourceIndex);
    const image = await archive.loadImage(index);
    return new DockerArchiveImageSource(reference, archive, image, context);
  } catch (error) {
    await archive.close();
    throw error;
  }
}
