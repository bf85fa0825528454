/**
 * An `ImageSource` over one image of an opened `docker save` archive, shared by the transports that read
 * that format (`docker-archive:` from a file, `docker-daemon:` from the Engine's `GET /images/{name}/get`).
 *
 * - The manifest is generated: Docker schema2, config `application/vnd.docker.container.image.v1+json`,
 *   layers `application/vnd.docker.image.rootfs.diff.tar.gzip` (as containers/image, although
 *   uncompressed) whose digests are the config's DiffIDs and whose sizes are the uncompressed sizes (Go
 *   `json.Marshal` form, byte-identical to skopeo's).
 * - `getBlob(config digest)` returns the config; `getBlob(DiffID)` the layer, decompressed when stored
 *   compressed. Layer bytes are not hashed on open (that would read every layer to inspect an image): the
 *   copy pipeline verifies them against the DiffID while streaming.
 * - No signatures; no manifest lists. `close()` closes the archive (and so removes any spool file).
 */
import { Readable } from 'node:stream';
import {
  type BlobInfo,
  type BlobStream,
  type Digest,
  ErrorCodes,
  GantryError,
  type ImageReference,
  type ImageSource,
  type ImageSourceProperties,
  type ManifestBlob,
  MediaTypes,
  type OperationOptions,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core/transport';
import type { DockerArchiveImage, DockerArchiveReader } from './reader.js';

export class DockerArchiveImageSource<Reference extends ImageReference = ImageReference>
  implements ImageSource
{
  readonly reference: Reference;
  readonly properties: ImageSourceProperties = Object.freeze({ hasThreadSafeGetBlob: true });
  readonly #archive: DockerArchiveReader;
  readonly #image: DockerArchiveImage;
  readonly #contextSignal: AbortSignal | undefined;
  /** `transport:reference`, for error messages. */
  readonly #name: string;
  #closed = false;

  constructor(
    reference: Reference,
    archive: DockerArchiveReader,
    image: DockerArchiveImage,
    context: TransportContext,
  ) {
    this.reference = reference;
    this.#archive = archive;
    this.#image = image;
    this.#contextSignal = context.signal;
    this.#name = `${reference.transport.name}:${reference.stringWithinTransport()}`;
  }

  #begin(options: OperationOptions | undefined): AbortSignal | undefined {
    if (this.#closed) {
      throw new GantryError(
        ErrorCodes.Internal,
        `${this.reference.transport.name} image source used after close()`,
      );
    }
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
        `manifest ${instanceDigest} not found: ${this.reference.transport.name}: images are not manifest lists`,
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
        `blob ${info.digest} is not part of ${this.#name} (${this.#archive.description})`,
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
