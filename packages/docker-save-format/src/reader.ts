/**
 * Reading `docker save` archives (written by `docker save`, `podman save`, skopeo, Gantry) through the tar
 * header index: nothing is extracted, each blob is streamed from its offset.
 */
import { availableParallelism } from 'node:os';
import type { Readable } from 'node:stream';
import {
  type Digest,
  type DockerReference,
  describeFileSystemError,
  digestOf,
  ErrorCodes,
  ExpansionGuard,
  GantryError,
  goJsonMarshal,
  MediaTypes,
  parseDigest,
  parseNormalizedNamed,
} from '@gantry/core/transport';
import {
  type ArchiveCompression,
  createArchiveDecompressor,
  defaultMetadataSizeLimit,
  detectArchiveCompression,
  normalizeEntryName,
  type OpenTarArchiveOptions,
  openTarArchive,
  openTarArchiveFromStream,
  type TarArchiveReader,
} from '@gantry/tar-archive';
import { digestFromBlobPath, type ManifestItem, manifestFileName, parseManifestJson } from './format.js';

/** Compression of a layer file in an archive, recognised by magic numbers (tar-archive's). */
export type ArchiveLayerCompression = ArchiveCompression;

export { createArchiveDecompressor, detectArchiveCompression };

/** Options of `openDockerArchive`. */
export interface OpenDockerArchiveOptions extends OpenTarArchiveOptions {
  /** Limit on the size of `manifest.json` (default 16 MiB). */
  manifestSizeLimit?: number;
  /** Limit on the size of an image config (default 16 MiB). */
  configSizeLimit?: number;
}

/** One layer of an image in the archive. */
export interface DockerArchiveLayer {
  /** The layer's DiffID (digest of its uncompressed tar), from the config; the blob digest the source serves. */
  diffId: Digest;
  /** Normalised path of the layer file in the archive. */
  path: string;
  /** Compression of the stored file. */
  compression: ArchiveLayerCompression;
  /** Size of the stored file. */
  storedSize: number;
  /** Size of the uncompressed layer (what `openLayer` streams). */
  size: number;
}

/** An image of the archive, loaded: config, layers and the Docker schema2 manifest describing it. */
export interface DockerArchiveImage {
  /** Index of the item in `manifest.json`. */
  index: number;
  item: ManifestItem;
  /** Tags of the item, parsed and normalised. */
  repoTags: DockerReference[];
  configBytes: Buffer;
  configDigest: Digest;
  /** The layers in manifest order (a DiffID repeated in the image appears once per use). */
  layers: DockerArchiveLayer[];
  /**
   * A Docker schema2 manifest (Go `json.Marshal` form, as containers/image generates it): config
   * `application/vnd.docker.container.image.v1+json`, layers `application/vnd.docker.image.rootfs.diff.tar.gzip` (as containers/image, although uncompressed)
   * with their DiffIDs as digests and uncompressed sizes.
   */
  manifestBytes: Buffer;
}

function invalid(message: string): GantryError {
  return new GantryError(ErrorCodes.InvalidLayout, message);
}

/**
 * A `docker save` archive open for reading. Obtain with `openDockerArchive` / `openDockerArchiveFromStream`.
 * `manifest` is read at open; images are loaded on demand (`loadImage`), with layer sizes of compressed layers
 * cached for the life of the reader.
 */
export class DockerArchiveReader {
  readonly tar: TarArchiveReader;
  readonly manifest: readonly ManifestItem[];
  readonly description: string;
  readonly #options: OpenDockerArchiveOptions;
  readonly #uncompressedSizes = new Map<string, Promise<number>>();

  /** @internal Use `openDockerArchive`. */
  constructor(
    tar: TarArchiveReader,
    manifest: ManifestItem[],
    description: string,
    options: OpenDockerArchiveOptions,
  ) {
    this.tar = tar;
    this.manifest = manifest;
    this.description = description;
    this.#options = options;
  }

  /** The item's tags parsed as normalised docker references; throws `ERR_GANTRY_INVALID_LAYOUT` naming a bad tag. */
  repoTagsOf(index: number): DockerReference[] {
    const item = this.manifest[index];
    if (!item)
      throw new GantryError(ErrorCodes.ImageNotFound, `no manifest item @${index} in ${this.description}`);
    return item.RepoTags.map((tag) => {
      try {
        return parseNormalizedNamed(tag);
      } catch (error) {
        throw new GantryError(
          ErrorCodes.InvalidLayout,
          `Invalid tag "${tag}" in ${manifestFileName} item @${index} of ${this.description}: ${(error as Error).message}`,
          { cause: error },
        );
      }
    });
  }

  /**
   * Chooses an item as containers/image does: by tag (the normalised reference equals a normalised
   * `RepoTags` element), by source index, or the only item when neither is given. Throws
   * `ERR_GANTRY_IMAGE_NOT_FOUND` naming what was not found.
   */
  chooseImage(reference: DockerReference | undefined, sourceIndex = -1): { index: number; tagIndex: number } {
    if (reference && sourceIndex !== -1) {
      throw new GantryError(ErrorCodes.Internal, `cannot choose by both ${reference} and @${sourceIndex}`);
    }
    if (reference) {
      const wanted = reference.toString();
      for (let index = 0; index < this.manifest.length; index++) {
        const tagIndex = this.repoTagsOf(index).findIndex((tag) => tag.toString() === wanted);
        if (tagIndex !== -1) return { index, tagIndex };
      }
      throw new GantryError(ErrorCodes.ImageNotFound, `Tag "${wanted}" not found in ${this.description}`);
    }
    if (sourceIndex !== -1) {
      if (sourceIndex >= this.manifest.length) {
        throw new GantryError(
          ErrorCodes.ImageNotFound,
          `Invalid source index @${sourceIndex}, only ${this.manifest.length} manifest items available in ${this.description}`,
        );
      }
      return { index: sourceIndex, tagIndex: -1 };
    }
    if (this.manifest.length !== 1) {
      throw new GantryError(
        ErrorCodes.ImageNotFound,
        `Unexpected tar manifest.json in ${this.description}: expected 1 item, got ${this.manifest.length}`,
      );
    }
    return { index: 0, tagIndex: -1 };
  }

  /**
   * Size of the uncompressed content of a compressed layer file (decompressed once and cached), within
   * the expansion limit (a bomb fails with `ERR_GANTRY_INVALID_LAYER`).
   */
  #uncompressedSize(
    entryPath: string,
    compression: Exclude<ArchiveLayerCompression, 'none'>,
  ): Promise<number> {
    let size = this.#uncompressedSizes.get(entryPath);
    if (!size) {
      size = (async () => {
        const decompressor = createArchiveDecompressor(compression, `layer ${entryPath}`);
        const { stream } = this.tar.openEntry(
          entryPath,
          this.#options.signal ? { signal: this.#options.signal } : {},
        );
        // A decompression bomb stops at the expansion limit (core's `ExpansionGuard`).
        const guard = new ExpansionGuard(`layer ${entryPath}`, ErrorCodes.InvalidLayer);
        let total = 0;
        stream.on('data', (chunk: Buffer) => guard.compressed(chunk.byteLength));
        const counted = stream.pipe(decompressor);
        stream.on('error', (error) => counted.destroy(error));
        try {
          for await (const chunk of counted) {
            total += (chunk as Buffer).length;
            guard.decompressed((chunk as Buffer).length);
          }
        } finally {
          stream.destroy();
        }
        return total;
      })();
      size.catch(() => this.#uncompressedSizes.delete(entryPath));
      this.#uncompressedSizes.set(entryPath, size);
    }
    return size;
  }

  #resolvePath(item: string, what: string, index: number): string {
    let normalized: string;
    try {
      normalized = normalizeEntryName(item);
    } catch (error) {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `${manifestFileName} item @${index} of ${this.description}: invalid ${what} path "${item}": ${(error as Error).message}`,
        { cause: error },
      );
    }
    const entry = this.tar.resolveFile(normalized);
    if (!entry) {
      throw invalid(
        `${manifestFileName} item @${index} of ${this.description}: ${what} "${item}" is not in the archive`,
      );
    }
    return normalized;
  }

  /**
   * Loads item `index`: reads and checks its config, finds its layers, and builds its manifest. Throws
   * `ERR_GANTRY_INVALID_LAYOUT` for: paths that are not files of the archive; a config larger than the
   * limit, or whose digest disagrees with its `blobs/<alg>/<hex>` or `<hex>.json` name; a config without
   * `rootfs.diff_ids`, or with a number of DiffIDs other than the number of layers; an uncompressed layer
   * stored as `blobs/<alg>/<hex>` whose name is not its DiffID; one layer file used for two DiffIDs.
   */
  async loadImage(index: number): Promise<DockerArchiveImage> {
    const item = this.manifest[index];
    if (!item)
      throw new GantryError(ErrorCodes.ImageNotFound, `no manifest item @${index} in ${this.description}`);
    const repoTags = this.repoTagsOf(index);
    const configPath = this.#resolvePath(item.Config, 'config', index);
    const configBytes = await this.tar.readEntryBytes(configPath, {
      maxSize: this.#options.configSizeLimit ?? defaultMetadataSizeLimit,
      ...(this.#options.signal ? { signal: this.#options.signal } : {}),
    });
    const configDigest = digestOf(configBytes);
    const namedDigest =
      digestFromBlobPath(configPath) ??
      (/^[a-f0-9]{64}\.json$/.test(configPath) ? (`sha256:${configPath.slice(0, 64)}` as Digest) : undefined);
    if (namedDigest?.startsWith('sha256:') && namedDigest !== configDigest) {
      throw invalid(
        `config "${item.Config}" in ${this.description} has digest ${configDigest}, not the one its name says`,
      );
    }
    let diffIds: Digest[];
    try {
      const config = JSON.parse(configBytes.toString('utf8')) as { rootfs?: { diff_ids?: unknown } };
      const raw = config.rootfs?.diff_ids;
      if (!config.rootfs) throw new Error('rootfs is not set');
      if (raw !== undefined && raw !== null && !Array.isArray(raw))
        throw new Error('rootfs.diff_ids is not an array');
      diffIds = ((raw as unknown[] | null | undefined) ?? []).map((value) => parseDigest(String(value)));
    } catch (error) {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `invalid image config "${item.Config}" in ${this.description}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    if (diffIds.length !== item.Layers.length) {
      throw invalid(
        `Inconsistent layer count in ${this.description} item @${index}: ${item.Layers.length} in manifest, ${diffIds.length} in config`,
      );
    }
    // The layer files, resolved and checked in manifest order; each DiffID's file read once.
    const pathsUsed = new Map<string, Digest>();
    const firstUses = new Map<Digest, string>();
    for (let layerIndex = 0; layerIndex < diffIds.length; layerIndex++) {
      const diffId = diffIds[layerIndex]!;
      // The same layer used twice (docker save makes the second a symlink): the DiffID check on read
      // ensures both are the same.
      if (firstUses.has(diffId)) continue;
      const layerPath = this.#resolvePath(item.Layers[layerIndex]!, 'layer', index);
      const previous = pathsUsed.get(layerPath);
      if (previous && previous !== diffId) {
        throw invalid(
          `Layer tarfile "${layerPath}" in ${this.description} used for two different DiffID values`,
        );
      }
      pathsUsed.set(layerPath, diffId);
      firstUses.set(diffId, layerPath);
    }
    // Their first bytes (the compression's magic number), read all at once: one round trip, not one per layer.
    const prefixes = await Promise.all(
      [...firstUses.values()].map((layerPath) => this.tar.readEntryPrefix(layerPath, 6)),
    );
    const compressions = new Map<Digest, ArchiveLayerCompression>();
    [...firstUses].forEach(([diffId, layerPath], position) => {
      const compression = detectArchiveCompression(prefixes[position]!);
      const namedLayerDigest = digestFromBlobPath(layerPath);
      if (
        compression === 'none' &&
        namedLayerDigest &&
        namedLayerDigest.split(':')[0] === diffId.split(':')[0] &&
        namedLayerDigest !== diffId
      ) {
        throw invalid(
          `layer "${layerPath}" in ${this.description} is uncompressed but its name is not its DiffID ${diffId}`,
        );
      }
      compressions.set(diffId, compression);
    });
    // Sizes of compressed layer files are learnt by decompressing them, a few at once (one per core:
    // each decompression holds its buffers).
    const byDiffId = new Map<Digest, DockerArchiveLayer>();
    const pending = [...firstUses];
    const describeNext = async (): Promise<void> => {
      for (let next = pending.shift(); next; next = pending.shift()) {
        const [diffId, layerPath] = next;
        const entry = this.tar.resolveFile(layerPath)!;
        const compression = compressions.get(diffId)!;
        let size = entry.size;
        if (compression !== 'none') {
          try {
            size = await this.#uncompressedSize(layerPath, compression);
          } catch (error) {
            pending.length = 0; // the others stop after their current layer
            throw error;
          }
        }
        byDiffId.set(diffId, { diffId, path: layerPath, compression, storedSize: entry.size, size });
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, availableParallelism()) }, describeNext));
    const layers = diffIds.map((diffId) => byDiffId.get(diffId)!);
    const manifestBytes = Buffer.from(
      goJsonMarshal({
        schemaVersion: 2,
        mediaType: MediaTypes.DockerManifest,
        config: { mediaType: MediaTypes.DockerConfig, size: configBytes.length, digest: configDigest },
        // containers/image labels the (uncompressed) layers with DockerV2Schema2LayerMediaType, the gzip type; kept so
        // that the manifest (and its digest) is byte-identical to skopeo's. The copy pipeline sniffs the bytes.
        layers: layers.map((layer) => ({
          mediaType: MediaTypes.DockerLayerGzip,
          size: layer.size,
          digest: layer.diffId,
        })),
      }),
    );
    return { index, item, repoTags, configBytes, configDigest, layers, manifestBytes };
  }

  /**
   * Streams an uncompressed layer (decompressing a compressed file), `size` the uncompressed size. The
   * bytes are not verified here: the copy pipeline checks them against the DiffID.
   */
  openLayer(
    layer: DockerArchiveLayer,
    options: { signal?: AbortSignal } = {},
  ): { stream: Readable; size: number } {
    const { stream } = this.tar.openEntry(layer.path, options);
    if (layer.compression === 'none') return { stream, size: layer.size };
    const decompressor = createArchiveDecompressor(layer.compression, `layer ${layer.path}`);
    stream.on('error', (error) => decompressor.destroy(error));
    decompressor.on('close', () => stream.destroy());
    return { stream: stream.pipe(decompressor), size: layer.size };
  }

  /** Closes the archive (and removes a spool file). Idempotent. */
  close(): Promise<void> {
    return this.tar.close();
  }
}

async function readManifest(
  tar: TarArchiveReader,
  description: string,
  options: OpenDockerArchiveOptions,
): Promise<DockerArchiveReader> {
  try {
    if (!tar.resolveFile(manifestFileName)) {
      throw invalid(`${description} is not a docker archive: it has no ${manifestFileName}`);
    }
    const bytes = await tar.readEntryBytes(manifestFileName, {
      maxSize: options.manifestSizeLimit ?? defaultMetadataSizeLimit,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return new DockerArchiveReader(tar, parseManifestJson(bytes), description, options);
  } catch (error) {
    await tar.close();
    throw error;
  }
}

/**
 * Opens the `docker save` archive at `archivePath` and reads its `manifest.json`. A regular, uncompressed
 * file is indexed in place; a compressed archive (`docker save | gzip`, accepted by `docker load`; also
 * zstd, bzip2, xz, as containers/image reads them) is decompressed into a spool file first, as is a
 * non-seekable input (FIFO, `/dev/stdin`) — tar-archive's `openTarArchive`. Throws
 * `ERR_GANTRY_INVALID_LAYOUT` for hostile or malformed archives (see `@gantry/tar-archive`), an archive
 * without `manifest.json`, or a `manifest.json` over the limit; `ERR_GANTRY_IMAGE_NOT_FOUND` when the file
 * does not exist (the system's error as Go words it).
 */
export async function openDockerArchive(
  archivePath: string,
  options: OpenDockerArchiveOptions = {},
): Promise<DockerArchiveReader> {
  let tar: TarArchiveReader;
  try {
    tar = await openTarArchive(archivePath, options);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new GantryError(ErrorCodes.ImageNotFound, describeFileSystemError(error), { cause: error });
    }
    throw error;
  }
  return readManifest(tar, archivePath, options);
}

/** Like `openDockerArchive`, reading the archive from a stream (spooled to a temporary file first). */
export async function openDockerArchiveFromStream(
  input: Readable | AsyncIterable<Uint8Array>,
  options: OpenDockerArchiveOptions & { description?: string } = {},
): Promise<DockerArchiveReader> {
  const description = options.description ?? 'docker archive stream';
  const tar = await openTarArchiveFromStream(input, { ...options, description });
  return readManifest(tar, description, options);
}

/** The references `list-tags` shows for an archive: per item, its tags, or `@N` when it has none. */
export function listArchiveImages(
  reader: DockerArchiveReader,
): Array<{ index: number; repoTags: DockerReference[] }> {
  return reader.manifest.map((_item, index) => ({ index, repoTags: reader.repoTagsOf(index) }));
}
