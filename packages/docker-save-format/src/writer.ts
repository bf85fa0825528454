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
 * Blobs arrive before the manifest, so entries are written as they come, one at a time (`putBlob` may be
 * called concurrently; entries are queued). The output is either
 *
 * - a regular file (a `FileHandle`): every blob is streamed straight into the archive, nothing is spooled.
 *   A blob of unknown digest or size gets a placeholder header that is overwritten when its data has ended
 *   (its name needs the digest, its header the size). Blobs arriving while another entry is being written
 *   wait for their turn. A blob whose stream fails is taken back (the file is truncated), so the pipeline
 *   can retry it;
 * - a stream (a pipe, the Engine's `POST /images/load` body): a blob whose digest and size are known is
 *   streamed straight in; one with an unknown digest or size is spooled to a temporary file first (the tar
 *   header precedes the data and cannot be changed later in a stream). A blob whose stream fails leaves an
 *   unreferenced zero-padded entry (a tar entry cannot be taken back from a pipe).
 */

import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
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
  throwIfAborted,
} from '@gantry/core/transport';
import {
  createTarWriter,
  SeekableTarWriter,
  spoolToTemporaryFile,
  type TarWriter,
} from '@gantry/tar-archive';
import {
  legacyConfigFileName,
  legacyLayerFileName,
  legacyVersionFileName,
  type ManifestItem,
  manifestFileName,
  rawJsonMembers,
  repositoriesFileName,
} from './format.js';
import { repoTagOf } from './reference.js';

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

/**
 * Where the archive goes: a stream, or a regular file opened for writing (empty), whose handle the writer
 * then owns (`finish()` and `abort()` close it).
 */
export type DockerArchiveOutput = Writable | FileHandle;

type ByteSource = Readable | AsyncIterable<Uint8Array>;

/** The ID docker uses for a chain of layers (`docker/docker/layer.CreateChainID`). */
function nextChainId(previous: Digest | undefined, layer: Digest): Digest {
  return previous === undefined ? layer : digestOf(`${previous} ${layer}`);
}

function isFileHandle(output: DockerArchiveOutput): output is FileHandle {
  return (
    typeof (output as FileHandle).truncate === 'function' && typeof (output as FileHandle).fd === 'number'
  );
}

/** Reads `source` to its end, discarding the bytes (so that the caller's pipeline ends normally). */
async function drain(source: ByteSource): Promise<void> {
  for await (const _chunk of source as AsyncIterable<Uint8Array>) {
    // discard
  }
}

/**
 * Writes one `docker save` archive with one or more images to `output`. Call `putBlob` for each layer and
 * config (concurrent calls are fine), then `addImage` per image, then `finish()`; or `abort()` on failure
 * (a stream output is destroyed, a file handle closed; the caller removes the file).
 */
export class DockerArchiveWriter {
  readonly #tar: TarWriter | undefined;
  readonly #file: SeekableTarWriter | undefined;
  readonly #handle: FileHandle | undefined;
  readonly #options: DockerArchiveWriterOptions;
  readonly #blobs = new Map<Digest, BlobInfo>();
  /** Blobs being written, by digest (when known): a second `putBlob` of the same blob waits for the first. */
  readonly #inFlight = new Map<Digest, Promise<BlobInfo>>();
  /** Entry name of each layer written (`<hex>.tar`, or `<hex>.<n>.tar` after n failed attempts). */
  readonly #layerEntries = new Map<Digest, string>();
  /** Entry names used by attempts whose stream failed: left in the archive as unreferenced zero-padded files. */
  readonly #discardedEntries = new Set<string>();
  readonly #configs = new Map<Digest, Buffer>();
  readonly #legacyLayers = new Set<string>();
  readonly #manifest: ManifestItem[] = [];
  readonly #manifestByConfig = new Map<Digest, number>();
  readonly #repositories = new Map<string, Map<string, string>>();

  constructor(output: DockerArchiveOutput, options: DockerArchiveWriterOptions = {}) {
    this.#options = options;
    if (isFileHandle(output)) {
      this.#handle = output;
      this.#file = new SeekableTarWriter(output, options.signal ? { signal: options.signal } : {});
    } else {
      this.#tar = createTarWriter(output, {
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.temporaryDirectory ? { temporaryDirectory: options.temporaryDirectory } : {}),
      });
    }
  }

  /** Bytes of archive produced so far. */
  get bytesWritten(): number {
    return (this.#file ?? this.#tar)!.bytesWritten;
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
   * A promise settling when the write of `digest` under way ends; undefined when none is. Callers loop
   * `for (let w = this.#writeUnderWay(d); w; w = this.#writeUnderWay(d)) await w;` and then, with no
   * `await` in between, check `#blobs` and start their `#writeOnce`: two writes of one blob never overlap.
   */
  #writeUnderWay(digest: Digest): Promise<unknown> | undefined {
    return this.#inFlight.get(digest)?.catch(() => undefined);
  }

  /** Runs `write` as the one write of `digest` under way; records the result. */
  async #writeOnce(digest: Digest, write: () => Promise<BlobInfo>): Promise<BlobInfo> {
    const running = write();
    this.#inFlight.set(digest, running);
    try {
      const result = await running;
      this.#blobs.set(digest, result);
      return result;
    } finally {
      this.#inFlight.delete(digest);
    }
  }

  /**
   * Writes a blob (a layer, or the config when `isConfig`). A blob already written (or being written) is
   * not written again: its stream is read to the end and the first write's result returned. Resolves with
   * the digest and size.
   *
   * - With `digest` and `size` known, the stream goes straight into the archive (the caller's verification
   *   stage must have been applied to `stream`). When that stream fails (an error, or a verification
   *   failure at its end), the call rejects and the archive stays usable: on a file output the entry is
   *   taken back; on a stream output it is completed with zeros and left unreferenced, and a retry of the
   *   same blob is written under `<hex>.<n>.tar`.
   * - Otherwise the digest is computed while the bytes are written (see the module comment for where they
   *   go); `ERR_GANTRY_DIGEST_MISMATCH` when a given `digest` is not the bytes'.
   * - A config is read into memory (at most 16 MiB; needed for the legacy layer metadata).
   *
   * `options.chunkWritten` (`PutBlobOptions.chunkWritten`) gets the chunks of a layer written into a file
   * output (of known digest and size, or streamed in place), each once it is in the file (chunks not yet
   * written when an entry is taken back are left alone).
   */
  async putBlob(
    stream: ByteSource,
    info: { digest?: Digest; size: number },
    options: { isConfig: boolean; signal?: AbortSignal; chunkWritten?: (chunk: Uint8Array) => void },
  ): Promise<BlobInfo> {
    const signal = options.signal;
    if (options.isConfig) return this.#putConfig(stream, info);
    if (info.digest && info.size >= 0) {
      const digest = info.digest;
      const size = info.size;
      for (let write = this.#writeUnderWay(digest); write; write = this.#writeUnderWay(digest)) await write;
      const existing = this.#blobs.get(digest);
      if (existing) {
        await drain(stream);
        return existing;
      }
      return this.#writeOnce(digest, async () => {
        const entryName = this.#freshLayerEntryName(digest);
        if (this.#file) {
          await this.#file.addStream(entryName, stream as AsyncIterable<Uint8Array>, size, {
            mode: 0o444,
            ...(signal ? { signal } : {}),
            ...(options.chunkWritten ? { chunkWritten: options.chunkWritten } : {}),
          });
        } else {
          try {
            await this.#tar!.addStream(entryName, stream, size, {
              mode: 0o444,
              padOnSourceError: true,
              ...(signal ? { signal } : {}),
            });
          } catch (error) {
            // The entry is complete (zero-padded) but wrong: never reference it; a retry gets a new name.
            this.#discardedEntries.add(entryName);
            throw error;
          }
        }
        this.#layerEntries.set(digest, entryName);
        return { digest, size };
      });
    }
    return this.#file
      ? this.#putInPlace(stream, info.digest, signal, options.chunkWritten)
      : this.#putSpooled(stream, info.digest, signal);
  }

  async #putConfig(stream: ByteSource, info: { digest?: Digest }): Promise<BlobInfo> {
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
    for (let write = this.#writeUnderWay(digest); write; write = this.#writeUnderWay(digest)) await write;
    const existing = this.#blobs.get(digest);
    if (existing) return existing;
    return this.#writeOnce(digest, async () => {
      await (this.#file ?? this.#tar)!.addBytes(DockerArchiveWriter.configPath(digest), bytes, {
        mode: 0o444,
      });
      return { digest, size: bytes.length };
    });
  }

  /**
   * A layer of unknown digest or size into a file output: streamed into an entry once every entry before
   * it is written (layers arriving concurrently wait for their turn; measured faster than spooling them
   * meanwhile, see the package README). The entry's header is written when the digest and size are known.
   */
  async #putInPlace(
    stream: ByteSource,
    expectedDigest: Digest | undefined,
    signal: AbortSignal | undefined,
    chunkWritten: ((chunk: Uint8Array) => void) | undefined,
  ): Promise<BlobInfo> {
    const entry = await this.#file!.beginEntry(chunkWritten ? { chunkWritten } : {});
    let settled = false;
    try {
      // A caller that names the digest has the stream verified (the contract's rule): hash only unknown ones.
      const digester = expectedDigest === undefined ? new Digester() : undefined;
      for await (const chunk of stream as AsyncIterable<Uint8Array>) {
        throwIfAborted(signal);
        digester?.update(chunk);
        await entry.write(chunk);
      }
      const digest = digester ? digester.digest() : expectedDigest!;
      // The same bytes may be under way or written already (another source blob with the same contents).
      if (this.#blobs.has(digest) || this.#inFlight.has(digest)) {
        settled = true;
        await entry.discard();
        for (let write = this.#writeUnderWay(digest); write; write = this.#writeUnderWay(digest)) await write;
        const twin = this.#blobs.get(digest);
        if (twin) return twin;
        // That other write failed after this copy was taken back: the bytes are lost, the caller retries.
        throw new GantryError(
          ErrorCodes.Transient,
          `blob ${digest}: a concurrent write of the same bytes failed`,
        );
      }
      const size = entry.size;
      const entryName = this.#freshLayerEntryName(digest);
      settled = true;
      return await this.#writeOnce(digest, async () => {
        await entry.commit(entryName, { mode: 0o444 });
        this.#layerEntries.set(digest, entryName);
        return { digest, size };
      });
    } catch (error) {
      if (!settled) await entry.discard();
      throw error;
    }
  }

  /** A layer of unknown digest or size into a stream output: spooled, then written with its header. */
  async #putSpooled(
    stream: ByteSource,
    expectedDigest: Digest | undefined,
    signal: AbortSignal | undefined,
  ): Promise<BlobInfo> {
    // A caller that names the digest has the stream verified (the contract's rule): hash only unknown ones.
    const digester = expectedDigest === undefined ? new Digester() : undefined;
    async function* digesting(source: ByteSource): AsyncGenerator<Uint8Array> {
      for await (const chunk of source as AsyncIterable<Uint8Array>) {
        digester?.update(chunk);
        yield chunk;
      }
    }
    const spool = await spoolToTemporaryFile(digesting(stream), this.#options.temporaryDirectory, signal);
    try {
      const digest = digester ? digester.digest() : expectedDigest!;
      for (let write = this.#writeUnderWay(digest); write; write = this.#writeUnderWay(digest)) await write;
      const existing = this.#blobs.get(digest);
      if (existing) return existing;
      return await this.#writeOnce(digest, async () => {
        const entryName = this.#freshLayerEntryName(digest);
        await this.#tar!.addStream(
          entryName,
          createReadStream(spool.path, { highWaterMark: 1024 * 1024 }),
          spool.size,
          { mode: 0o444, ...(signal ? { signal } : {}) },
        );
        this.#layerEntries.set(digest, entryName);
        return { digest, size: spool.size };
      });
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
    const tags = image.repoTags.map((reference) => repoTagOf(reference, 'a docker save archive'));

    // Legacy layer directories.
    const configMembers = rawJsonMembers(configBytes.toString('utf8'));
    let chainId: Digest | undefined;
    let lastLayerId = '';
    const legacyWrites: Promise<void>[] = [];
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
        const tar = (this.#file ?? this.#tar)!;
        // Queued without waiting for each: a file output writes them together (see SeekableTarWriter).
        legacyWrites.push(
          tar.addSymlink(`${layerId}/${legacyLayerFileName}`, `../${this.#layerEntries.get(layerDigest)!}`),
          tar.addBytes(`${layerId}/${legacyVersionFileName}`, '1.0', { mode: 0o444 }),
          tar.addBytes(`${layerId}/${legacyConfigFileName}`, marshal(layerConfig), { mode: 0o444 }),
        );
        this.#legacyLayers.add(layerId);
      }
      lastLayerId = layerId;
    }
    await Promise.all(legacyWrites);
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

  /**
   * Writes `manifest.json` and `repositories` and ends the archive; then waits for a stream output to
   * flush, or closes a file output's handle.
   */
  async finish(): Promise<void> {
    const tar = (this.#file ?? this.#tar)!;
    await Promise.all([
      tar.addBytes(manifestFileName, goJsonMarshal(this.#manifest), { mode: 0o444 }),
      tar.addBytes(repositoriesFileName, goJsonMarshal(this.#repositories), { mode: 0o444 }),
    ]);
    await tar.finish();
    await this.#handle?.close();
  }

  /** Fails the archive: destroys a stream output, closes a file output's handle; later calls reject. */
  abort(error?: Error): void {
    (this.#file ?? this.#tar)!.abort(error);
  }
}

/** Creates a `DockerArchiveWriter` writing to `output` (a stream, or a regular file's handle). */
export function createDockerArchiveWriter(
  output: DockerArchiveOutput,
  options: DockerArchiveWriterOptions = {},
): DockerArchiveWriter {
  return new DockerArchiveWriter(output, options);
}

/** Go's `json.Marshal` of a `map[string]any` (keys sorted) whose values may be raw JSON. */
function marshal(value: Record<string, unknown>): string {
  return goJsonMarshalWithRaw(new Map(Object.entries(value)));
}
