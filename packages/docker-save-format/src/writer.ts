/**
 * Writing `docker save` archives that `docker load` and `podman load` accept, with the layout
 * containers/image's docker/internal/tarfile writer uses:
 *
 * - layers (uncompressed tars) as `<layer-hex>.tar` at the root, configs as `<config-hex>.json`;
 * - per layer, a legacy directory `<layer-id>/` with `layer.tar` (a symlink to `../<layer-hex>.tar`),
 *   `VERSION` (`1.0`) and `json` (`id`, `parent`, and for the top layer `architecture`, `config`, `container`,
 *   `container_config`, `created`, `docker_version`, `os` copied from the image config);
 * - at the end `manifest.json` (`[{Config, RepoTags, Layers}]`) and `repositories` (`{name: {tag: top layer ID}}`).
 *
 * Blobs arrive before the manifest, so entries are written as they come: a blob whose digest and size are
 * known is streamed straight into the archive; one with an unknown digest or size is spooled to a temporary
 * file first (the tar header needs the size, the file name needs the digest). A blob whose stream fails
 * leaves an unreferenced zero-padded entry (a tar entry cannot be taken back from a pipe), so the copy
 * pipeline can retry it.
 */
import { createReadStream } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import {
  type BlobInfo,
  type Digest,
  Digester,
  type DockerReference,
  digestHex,
  digestOf,
  ErrorCodes,
  GantryError,
  goJsonMarshal,
  goJsonMarshalWithRaw,
  parseDigest,
  RawJson,
  tagNameOnly,
} from '@gantry/core';
import { createTarWriter, spoolToTemporaryFile, type TarWriter } from '@gantry/tar-archive';
import {
  legacyConfigFileName,
  legacyLayerFileName,
  legacyVersionFileName,
  type ManifestItem,
  manifestFileName,
  rawJsonMembers,
  repositoriesFileName,
} from './format.js';

/** Options of `createDockerArchiveWriter`. */
export interface DockerArchiveWriterOptions {
  signal?: AbortSignal;
  /** Directory for spool files of blobs of unknown digest or size. */
  temporaryDirectory?: string;
}

/** An image to record in the archive, after its blobs were written. */
export interface DockerArchiveImageToAdd {
  configDigest: Digest;
  /** Layer digests (of the uncompressed layers written with `putBlob`), base first. */
  layerDigests: Digest[];
  /** Tags; name-only references get `:latest`; digest references are refused. */
  repoTags: DockerReference[];
}

type ByteSource = Readable | AsyncIterable<Uint8Array>;

/** The ID docker uses for a chain of layers (`docker/docker/layer.CreateChainID`). */
function nextChainId(previous: Digest | undefined, layer: Digest): Digest {
  return previous === undefined ? layer : digestOf(`${previous} ${layer}`);
}

/**
 * Writes one `docker save` archive with one or more images to `output`. Call `putBlob` for each layer and
 * config, then `addImage` per image, then `finish()`; or `abort()` on failure (the output is destroyed).
 */
export class DockerArchiveWriter {
  readonly #tar: TarWriter;
  readonly #options: DockerArchiveWriterOptions;
  readonly #blobs = new Map<Digest, BlobInfo>();
  /** Entry name of each layer written (`<hex>.tar`, or `<hex>.<n>.tar` after n failed attempts). */
  readonly #layerEntries = new Map<Digest, string>();
  /** Entry names used by attempts whose stream failed: left in the archive as unreferenced zero-padded files. */
  readonly #discardedEntries = new Set<string>();
  readonly #configs = new Map<Digest, Buffer>();
  readonly #legacyLayers = new Set<string>();
  readonly #manifest: ManifestItem[] = [];
  readonly #manifestByConfig = new Map<Digest, number>();
  readonly #repositories = new Map<string, Map<string, string>>();

  constructor(output: Writable, options: DockerArchiveWriterOptions = {}) {
    this.#options = options;
    this.#tar = createTarWriter(output, {
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.temporaryDirectory ? { temporaryDirectory: options.temporaryDirectory } : {}),
    });
  }

  /** Bytes of archive produced so far. */
  get bytesWritten(): number {
    return this.#tar.bytesWritten;
  }

  /** The blob already written with this digest, if any. */
  hasBlob(digest: Digest): BlobInfo | undefined {
    return this.#blobs.get(digest);
  }

  /** Path of a config in the archive. */
  static configPath(digest: Digest): string {
    return `${digestHex(parseDigest(digest))}.json`;
  }

  /** Path of a layer file in the archive (the first attempt's; see `putBlob`). */
  static layerPath(digest: Digest): string {
    return `${digestHex(parseDigest(digest))}.tar`;
  }

  /** `<hex>.tar`, or `<hex>.<n>.tar` when earlier attempts to write the layer failed. */
  #freshLayerEntryName(digest: Digest): string {
    let name = DockerArchiveWriter.layerPath(digest);
    for (let attempt = 1; this.#discardedEntries.has(name); attempt++) {
      name = `${digestHex(parseDigest(digest))}.${attempt}.tar`;
    }
    return name;
  }

  /**
   * Writes a blob (a layer, or the config when `isConfig`). With `digest` and `size` known, the stream goes
   * straight into the archive (the caller's verification stage must have been applied to `stream`). When
   * that stream fails (an error, or a verification failure at its end), the call rejects but the archive
   * stays usable: the entry is completed with zeros and left unreferenced, and a retry of the same blob is
   * written under `<hex>.<n>.tar`. Otherwise the blob is spooled to a temporary file while its digest is
   * computed. A config is read into memory (at most 16 MiB; needed for the legacy
   * layer metadata). A blob already written is not written again. Resolves with the digest and size.
   */
  async putBlob(
    stream: ByteSource,
    info: { digest?: Digest; size: number },
    options: { isConfig: boolean; signal?: AbortSignal },
  ): Promise<BlobInfo> {
    const signal = options.signal;
    if (options.isConfig) {
      const chunks: Buffer[] = [];
      let length = 0;
      for await (const chunk of stream as AsyncIterable<Uint8Array>) {
        length += chunk.byteLength;
        if (length > 16 * 1024 * 1024) {
          throw new GantryError(ErrorCodes.InvalidManifest, 'image config is larger than 16 MiB');
        }
        chunks.push(Buffer.from(chunk));
      }
      const bytes = Buffer.concat(chunks);
      const digest = digestOf(bytes);
      if (info.digest && info.digest !== digest && info.digest.startsWith('sha256:')) {
        throw new GantryError(
          ErrorCodes.DigestMismatch,
          `config: digest mismatch: expected ${info.digest}, got ${digest}`,
        );
      }
      this.#configs.set(digest, bytes);
      const existing = this.#blobs.get(digest);
      if (existing) return existing;
      await this.#tar.addBytes(DockerArchiveWriter.configPath(digest), bytes, { mode: 0o444 });
      const result = { digest, size: bytes.length };
      this.#blobs.set(digest, result);
      return result;
    }
    if (info.digest && info.size >= 0) {
      const existing = this.#blobs.get(info.digest);
      if (existing) {
        // Already in the archive: consume the stream (so the caller's pipeline ends normally) and keep the first.
        for await (const _chunk of stream as AsyncIterable<Uint8Array>) {
          // discard
        }
        return existing;
      }
      const entryName = this.#freshLayerEntryName(info.digest);
      try {
        await this.#tar.addStream(entryName, stream, info.size, {
          mode: 0o444,
          padOnSourceError: true,
          ...(signal ? { signal } : {}),
        });
      } catch (error) {
        // The entry is complete (zero-padded) but wrong: never reference it; a retry gets a new name.
        this.#discardedEntries.add(entryName);
        throw error;
      }
      const result = { digest: info.digest, size: info.size };
      this.#blobs.set(info.digest, result);
      this.#layerEntries.set(info.digest, entryName);
      return result;
    }
    const digester = new Digester();
    async function* digesting(source: ByteSource): AsyncGenerator<Uint8Array> {
      for await (const chunk of source as AsyncIterable<Uint8Array>) {
        digester.update(chunk);
        yield chunk;
      }
    }
    const spool = await spoolToTemporaryFile(digesting(stream), this.#options.temporaryDirectory, signal);
    try {
      const digest = digester.digest();
      if (info.digest && info.digest !== digest) {
        throw new GantryError(
          ErrorCodes.DigestMismatch,
          `blob: digest mismatch: expected ${info.digest}, got ${digest}`,
        );
      }
      const existing = this.#blobs.get(digest);
      if (existing) return existing;
      const entryName = this.#freshLayerEntryName(digest);
      await this.#tar.addStream(entryName, createReadStream(spool.path), spool.size, {
        mode: 0o444,
        ...(signal ? { signal } : {}),
      });
      const result = { digest, size: spool.size };
      this.#blobs.set(digest, result);
      this.#layerEntries.set(digest, entryName);
      return result;
    } finally {
      await spool.remove();
    }
  }

  /**
   * Records an image whose config and layers were written: writes its legacy layer directories and adds
   * its `manifest.json` item (or its tags to an existing item with the same config). Throws
   * `ERR_GANTRY_BLOB_NOT_FOUND` when a blob was not written, `ERR_GANTRY_INVALID_REFERENCE` for a tag with a
   * digest.
   */
  async addImage(image: DockerArchiveImageToAdd): Promise<void> {
    const configBytes = this.#configs.get(image.configDigest);
    if (!configBytes) {
      throw new GantryError(
        ErrorCodes.BlobNotFound,
        `config ${image.configDigest} was not written to the archive`,
      );
    }
    for (const layer of image.layerDigests) {
      if (!this.#blobs.has(layer)) {
        throw new GantryError(ErrorCodes.BlobNotFound, `layer ${layer} was not written to the archive`);
      }
    }
    const tags = image.repoTags.map((reference) => {
      const tagged = tagNameOnly(reference);
      if (tagged.digest !== undefined || tagged.tag === undefined) {
        throw new GantryError(
          ErrorCodes.InvalidReference,
          `docker archives cannot record digest references: ${reference}`,
        );
      }
      return tagged;
    });

    // Legacy layer directories.
    const configMembers = rawJsonMembers(configBytes.toString('utf8'));
    let chainId: Digest | undefined;
    let lastLayerId = '';
    for (let index = 0; index < image.layerDigests.length; index++) {
      const layerDigest = image.layerDigests[index]!;
      const layerConfig: Record<string, unknown> = {};
      if (lastLayerId !== '') layerConfig.parent = lastLayerId;
      if (index === image.layerDigests.length - 1) {
        for (const attribute of [
          'architecture',
          'config',
          'container',
          'container_config',
          'created',
          'docker_version',
          'os',
        ]) {
          const raw = configMembers.get(attribute);
          layerConfig[attribute] = raw === undefined ? null : new RawJson(raw);
        }
      }
      chainId = nextChainId(chainId, layerDigest);
      const layerId = digestHex(digestOf(marshal({ ...layerConfig, layer_id: chainId })));
      layerConfig.id = layerId;
      if (!this.#legacyLayers.has(layerId)) {
        await this.#tar.addSymlink(
          `${layerId}/${legacyLayerFileName}`,
          `../${this.#layerEntries.get(layerDigest)!}`,
        );
        await this.#tar.addBytes(`${layerId}/${legacyVersionFileName}`, '1.0', { mode: 0o444 });
        await this.#tar.addBytes(`${layerId}/${legacyConfigFileName}`, marshal(layerConfig), { mode: 0o444 });
        this.#legacyLayers.add(layerId);
      }
      lastLayerId = layerId;
    }
    if (lastLayerId !== '') {
      for (const tag of tags) {
        let tagsOfName = this.#repositories.get(tag.name);
        if (!tagsOfName) {
          tagsOfName = new Map();
          this.#repositories.set(tag.name, tagsOfName);
        }
        tagsOfName.set(tag.tag!, lastLayerId);
      }
    }

    // manifest.json item.
    const layerPaths = image.layerDigests.map((digest) => this.#layerEntries.get(digest)!);
    let itemIndex = this.#manifestByConfig.get(image.configDigest);
    if (itemIndex === undefined) {
      itemIndex = this.#manifest.length;
      this.#manifestByConfig.set(image.configDigest, itemIndex);
      this.#manifest.push({
        Config: DockerArchiveWriter.configPath(image.configDigest),
        RepoTags: [],
        Layers: layerPaths,
      });
    } else if (this.#manifest[itemIndex]!.Layers.join('\n') !== layerPaths.join('\n')) {
      throw new GantryError(
        ErrorCodes.Internal,
        `config ${image.configDigest} recorded with different layers`,
      );
    }
    const item = this.#manifest[itemIndex]!;
    for (const tag of tags) {
      const text = `${tag.name}:${tag.tag}`;
      if (!item.RepoTags.includes(text)) item.RepoTags.push(text);
    }
  }

  /** Writes `manifest.json` and `repositories`, ends the archive and waits for the output to flush. */
  async finish(): Promise<void> {
    await this.#tar.addBytes(manifestFileName, goJsonMarshal(this.#manifest), { mode: 0o444 });
    await this.#tar.addBytes(repositoriesFileName, goJsonMarshal(this.#repositories), { mode: 0o444 });
    await this.#tar.finish();
  }

  /** Fails the archive: destroys the output; later calls reject. */
  abort(error?: Error): void {
    this.#tar.abort(error);
  }
}

/** Creates a `DockerArchiveWriter` writing to `output`. */
export function createDockerArchiveWriter(
  output: Writable,
  options: DockerArchiveWriterOptions = {},
): DockerArchiveWriter {
  return new DockerArchiveWriter(output, options);
}

/** Go's `json.Marshal` of a `map[string]any` (keys sorted) whose values may be raw JSON. */
function marshal(value: Record<string, unknown>): string {
  return goJsonMarshalWithRaw(new Map(Object.entries(value)));
}
