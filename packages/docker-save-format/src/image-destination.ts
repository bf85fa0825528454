/**
 * The `ImageDestination` part shared by the transports that write a `docker save` archive
 * (`docker-archive:` into a file, `docker-daemon:` into the Engine's `POST /images/load`): blobs, the
 * manifest and signatures go through one `DockerArchiveWriter`; the transport adds only where the archive
 * goes and what `commit()` and `close()` do with it.
 *
 * - Layers are uncompressed (`desiredLayerCompression: 'decompress'`), except those in a compression the
 *   transport keeps (`keptLayerCompressions`); only Docker schema2 manifests are accepted (the pipeline
 *   converts); no signatures, no manifest lists; one image per destination.
 * - `putBlob` may be called concurrently (`hasThreadSafePutBlob`): the writer queues entries.
 * - `tryReusingBlob` reuses only blobs already written into this archive.
 * - `commit()` ends the archive, then calls the transport's `completeArchive()`; `close()` without a
 *   successful `commit()` aborts the writer, then calls `discardArchive()`.
 */
import type { Readable } from 'node:stream';
import {
  type BlobInfo,
  type BlobToWrite,
  type Digest,
  type DockerReference,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageDestinationProperties,
  type ImageReference,
  MediaTypes,
  type OperationOptions,
  type PutBlobOptions,
  parseDigest,
  type ReusedBlob,
  type TransportContext,
  type TryReusingBlobOptions,
  throwIfAborted,
} from '@gantry/core/transport';
import { createDockerArchiveWriter, type DockerArchiveOutput, type DockerArchiveWriter } from './writer.js';

/** What a transport tells `DockerArchiveImageDestinationBase`. */
export interface DockerArchiveDestinationSettings {
  /** Where the archive goes (see `DockerArchiveOutput`). */
  output: DockerArchiveOutput;
  /** Tags recorded for the image (`manifest.json` `RepoTags`, `repositories`). */
  repoTags: DockerReference[];
  /** Whether images for another OS than the runtime's are refused (a daemon). */
  mustMatchRuntimeOS: boolean;
  /** Layer compressions written as they are (see `dockerArchiveDestinationProperties`). */
  keptLayerCompressions?: readonly ('gzip' | 'zstd')[];
  /** How messages name what the transport writes, e.g. `docker tar files`. */
  storageDescription: string;
  context: TransportContext;
}

/**
 * The destination properties of `docker save` writers, given `mustMatchRuntimeOS` and the layer
 * compressions the archive's reader decompresses itself (`keptLayerCompressions`; none by default, as a
 * file written by `docker save` has uncompressed layers).
 */
export function dockerArchiveDestinationProperties(
  mustMatchRuntimeOS: boolean,
  keptLayerCompressions: readonly ('gzip' | 'zstd')[] = [],
): ImageDestinationProperties {
  return Object.freeze({
    supportedManifestMimeTypes: Object.freeze([MediaTypes.DockerManifest]),
    desiredLayerCompression: 'decompress',
    ...(keptLayerCompressions.length > 0
      ? { keptLayerCompressions: Object.freeze([...keptLayerCompressions]) }
      : {}),
    acceptsForeignLayerURLs: false,
    mustMatchRuntimeOS,
    supportsSignatures: false,
    hasThreadSafePutBlob: true,
    ignoresEmbeddedDockerReference: false,
  });
}

/** The config and layer digests of a Docker schema2 manifest; throws for any other manifest. */
export function parseDockerSchema2Manifest(
  manifest: Uint8Array,
  mediaType: string,
): { configDigest: Digest; layerDigests: Digest[] } {
  let parsed: {
    schemaVersion?: unknown;
    mediaType?: unknown;
    config?: { digest?: unknown };
    layers?: Array<{ digest?: unknown }>;
  };
  try {
    parsed = JSON.parse(Buffer.from(manifest).toString('utf8'));
  } catch (error) {
    throw new GantryError(ErrorCodes.InvalidManifest, `parsing manifest: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (parsed.schemaVersion !== 2 || parsed.mediaType !== MediaTypes.DockerManifest) {
    throw new GantryError(
      ErrorCodes.UnsupportedManifestType,
      `Unsupported manifest type ${mediaType || String(parsed.mediaType)}, need a Docker schema 2 manifest`,
    );
  }
  try {
    return {
      configDigest: parseDigest(String(parsed.config?.digest)),
      layerDigests: (parsed.layers ?? []).map((layer) => parseDigest(String(layer.digest))),
    };
  } catch (error) {
    throw new GantryError(ErrorCodes.InvalidManifest, `invalid manifest: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * An `ImageDestination` writing one image as a `docker save` archive. Subclasses say what happens to the
 * finished archive (`completeArchive`), to an abandoned one (`discardArchive`), and what to release after a
 * commit (`releaseArchive`).
 */
export abstract class DockerArchiveImageDestinationBase<Reference extends ImageReference = ImageReference>
  implements ImageDestination
{
  readonly reference: Reference;
  readonly properties: ImageDestinationProperties;
  protected readonly writer: DockerArchiveWriter;
  readonly #repoTags: DockerReference[];
  readonly #storageDescription: string;
  readonly #contextSignal: AbortSignal | undefined;
  #manifestWritten = false;
  /** `commit()` was called (the destination takes no more calls but `close()`). */
  #commitStarted = false;
  /** `commit()` succeeded. */
  #committed = false;
  #closed = false;

  constructor(reference: Reference, settings: DockerArchiveDestinationSettings) {
    this.reference = reference;
    this.properties = dockerArchiveDestinationProperties(
      settings.mustMatchRuntimeOS,
      settings.keptLayerCompressions,
    );
    this.#repoTags = settings.repoTags;
    this.#storageDescription = settings.storageDescription;
    this.#contextSignal = settings.context.signal;
    this.writer = createDockerArchiveWriter(settings.output, {
      ...(settings.context.signal ? { signal: settings.context.signal } : {}),
      ...(settings.context.temporaryDirectory
        ? { temporaryDirectory: settings.context.temporaryDirectory }
        : {}),
    });
  }

  /** Called by `commit()` once the archive is complete (the writer finished). */
  protected abstract completeArchive(options: OperationOptions | undefined): Promise<void>;
  /** Called by `close()` without a commit, after the writer was aborted: remove what was written. */
  protected abstract discardArchive(): Promise<void>;
  /** Called by `close()` after a commit. */
  protected async releaseArchive(): Promise<void> {}

  get #transportName(): string {
    return this.reference.transport.name;
  }

  #begin(options: OperationOptions | undefined): AbortSignal | undefined {
    if (this.#closed || this.#commitStarted) {
      throw new GantryError(
        ErrorCodes.Internal,
        `${this.#transportName} image destination used after commit() or close()`,
      );
    }
    const signals = [this.#contextSignal, options?.signal].filter((signal) => signal !== undefined);
    const signal = signals.length <= 1 ? signals[0] : AbortSignal.any(signals);
    throwIfAborted(signal);
    return signal;
  }

  #refuseInstance(instanceDigest: Digest | undefined): void {
    if (instanceDigest !== undefined) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `Manifest lists are not supported for ${this.#storageDescription}`,
      );
    }
  }

  async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
    const signal = this.#begin(options);
    const stored = await this.writer.putBlob(
      stream,
      { ...(info.digest ? { digest: info.digest } : {}), size: info.size },
      {
        isConfig: options.isConfig,
        ...(signal ? { signal } : {}),
        ...(options.chunkWritten ? { chunkWritten: options.chunkWritten } : {}),
      },
    );
    return { ...stored, ...(info.mediaType ? { mediaType: info.mediaType } : {}) };
  }

  /** Reuses only blobs already written into this archive. */
  async tryReusingBlob(info: BlobInfo, options: TryReusingBlobOptions): Promise<ReusedBlob> {
    this.#begin(options);
    const existing = this.writer.hasBlob(info.digest);
    return existing ? { reused: true, blob: { ...existing } } : { reused: false };
  }

  async putManifest(
    manifest: Uint8Array,
    mediaType: string,
    instanceDigest?: Digest,
    options?: OperationOptions,
  ): Promise<void> {
    this.#begin(options);
    this.#refuseInstance(instanceDigest);
    const { configDigest, layerDigests } = parseDockerSchema2Manifest(manifest, mediaType);
    if (this.#manifestWritten) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `a ${this.#transportName}: destination holds one image; a manifest was already written`,
      );
    }
    await this.writer.addImage({ configDigest, layerDigests, repoTags: this.#repoTags });
    this.#manifestWritten = true;
  }

  async putSignatures(
    signatures: Uint8Array[],
    instanceDigest?: Digest,
    options?: OperationOptions,
  ): Promise<void> {
    this.#begin(options);
    this.#refuseInstance(instanceDigest);
    if (signatures.length > 0) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `Storing signatures for ${this.#storageDescription} is not supported`,
      );
    }
  }

  async commit(options?: OperationOptions): Promise<void> {
    this.#begin(options);
    if (!this.#manifestWritten) {
      throw new GantryError(ErrorCodes.Internal, `${this.#transportName}: commit() before putManifest()`);
    }
    this.#commitStarted = true;
    await this.writer.finish();
    await this.completeArchive(options);
    this.#committed = true;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#committed) {
      await this.releaseArchive();
      return;
    }
    this.writer.abort(
      new GantryError(ErrorCodes.Aborted, `${this.#transportName} destination closed without commit`),
    );
    await this.discardArchive();
  }
}
