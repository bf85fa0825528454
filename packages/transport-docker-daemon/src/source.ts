/**
 * Reading an image from the Docker Engine: `GET /images/{name}/get` returns a `docker save` tar stream.
 * The stream is spooled to a temporary file (in `context.temporaryDirectory`, else the OS temporary directory)
 * and read with `@gantry/docker-save-format`: `docker save` writes `manifest.json` LAST, so nothing can be
 * served before the whole tar is read, and blobs are then read in the copy's order, which needs the tar
 * indexed (skopeo spools the same way). `close()` removes the spool file.
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
  openDockerArchiveFromStream,
} from '@gantry/docker-save-format';
import { DockerEngineClient, dockerHostOf, dockerTlsSettingsOf } from './client.js';
import type { DockerDaemonReference } from './reference.js';

class DockerDaemonImageSource implements ImageSource {
  readonly reference: DockerDaemonReference;
  readonly properties: ImageSourceProperties = Object.freeze({ hasThreadSafeGetBlob: true });
  readonly #archive: DockerArchiveReader;
  readonly #image: DockerArchiveImage;
  readonly #contextSignal: AbortSignal | undefined;
  #closed = false;

  constructor(
    reference: DockerDaemonReference,
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
      throw new GantryError(ErrorCodes.Internal, 'docker-daemon image source used after close()');
    const signals = [this.#contextSignal, options?.signal].filter((signal) => signal !== undefined);
    const signal = signals.length <= 1 ? signals[0] : AbortSignal.any(signals);
    throwIfAborted(signal);
    return signal;
  }

  /** The image as the daemon saved it (manifest item, config, layers). */
  get image(): DockerArchiveImage {
    return this.#image;
  }

  async getManifest(instanceDigest?: Digest, options?: OperationOptions): Promise<ManifestBlob> {
    this.#begin(options);
    if (instanceDigest !== undefined) {
      throw new GantryError(
        ErrorCodes.ImageNotFound,
        `manifest ${instanceDigest} not found: docker-daemon: images are not manifest lists`,
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
        `blob ${info.digest} is not part of docker-daemon:${this.reference.stringWithinTransport()}`,
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
 * Opens the image `reference` names in the daemon. `ERR_GANTRY_IMAGE_NOT_FOUND` when the daemon has no such
 * image; `ERR_GANTRY_TRANSIENT` naming the address when the daemon cannot be reached.
 */
export async function openDockerDaemonImageSource(
  reference: DockerDaemonReference,
  context: TransportContext,
): Promise<ImageSource & { readonly image: DockerArchiveImage }> {
  throwIfAborted(context.signal);
  const client = new DockerEngineClient(dockerHostOf(context), dockerTlsSettingsOf(context));
  const name = reference.stringWithinTransport();
  try {
    const response = await client.request('GET', `/images/${encodeURIComponent(name)}/get`, {
      ...(context.signal ? { signal: context.signal } : {}),
    });
    if (response.statusCode !== 200) {
      const message = await DockerEngineClient.errorMessage(response);
      throw new GantryError(
        response.statusCode === 404 ? ErrorCodes.ImageNotFound : ErrorCodes.Transient,
        `docker-daemon:${name}: ${message}`,
      );
    }
    const archive = await openDockerArchiveFromStream(response.body, {
      description: `docker-daemon:${name} (saved by ${client.host})`,
      ...(context.signal ? { signal: context.signal } : {}),
      ...(context.temporaryDirectory ? { temporaryDirectory: context.temporaryDirectory } : {}),
    });
    try {
      const { index } = archive.chooseImage(undefined, -1);
      const image = await archive.loadImage(index);
      return new DockerDaemonImageSource(reference, archive, image, context);
    } catch (error) {
      await archive.close();
      throw error;
    }
  } finally {
    await client.close();
  }
}
