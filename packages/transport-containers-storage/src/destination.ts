/**
 * Writing an image into a containers/storage store, as containers/image's storage destination does.
 *
 * Layers arrive concurrently and in any order, but a layer's ID depends on its parent's (see ids.ts) and
 * vfs builds a layer on a copy of its parent; so each layer blob is spooled as it arrives (bytes as
 * received, compressed, in a temporary directory) and, at commit, the layers are applied in manifest
 * order, each decompressed while streaming into the driver's `applyDiff`. A layer the store already has
 * (same chain ID) is reused without reading its blob; a blob `tryReusingBlob` found in the store (by
 * compressed or uncompressed digest) under another parent is rebuilt from that layer's tar-split.
 *
 * Visibility: layers become records in layers.json as they are applied (flagged `incomplete` until their
 * files and tar-split are complete, as containers/storage does); the image record, its names and big data
 * appear at once at the end of `commit`. A failed commit removes the layers it created that no image
 * uses; `close` removes the spooled blobs.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type BlobInfo,
  type BlobToWrite,
  blobWriteStage,
  createDecompressor,
  type Digest,
  detectCompression,
  digestOf,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageDestinationProperties,
  MediaTypes,
  manifestDigest,
  type OperationOptions,
  type PutBlobOptions,
  parseImageConfig,
  parseManifest,
  type ReusedBlob,
  type TransportContext,
  type TryReusingBlobOptions,
} from '@gantry/core/transport';
import {
  encodedPart,
  goTimestamp,
  imageDigestBigDataKey,
  layerIdFor,
  manifestBigDataKey,
  signatureBigDataKey,
} from './ids.js';
import { openLayerDiff } from './layer-content.js';
import type { ContainersStorageReference } from './reference.js';
import {
  atomicWriteFileSync,
  type ContainersStore,
  type ImageRecord,
  incompleteFlag,
  type LayerRecord,
  layerCompressionCodes,
  setImageBigData,
  sortedMaps,
} from './store.js';

interface SpooledBlob {
  path: string;
  size: number;
}

interface ReusedLayer {
  /** The layer found in the store with these contents. */
  layerId: string;
  diffId: string;
}

/** Go's time.Time JSON text for a config `created` value: fraction without trailing zeros. */
function goTimeText(value: string): string {
  return value.replace(/\.(\d*?)0+(Z|[+-]\d\d:\d\d)$/, (_, digits: string, zone: string) =>
    digits ? `.${digits}${zone}` : zone,
  );
}

export class ContainersStorageDestination implements ImageDestination {
  readonly properties: ImageDestinationProperties = {
    supportedManifestMimeTypes: [MediaTypes.OciManifest, MediaTypes.DockerManifest],
    desiredLayerCompression: 'preserve',
    acceptsForeignLayerURLs: false,
    mustMatchRuntimeOS: true,
    supportsSignatures: true,
    hasThreadSafePutBlob: true,
    ignoresEmbeddedDockerReference: true,
  };

  private readonly spooled = new Map<string, SpooledBlob>();
  private readonly configs = new Map<string, Uint8Array>();
  private readonly reused = new Map<string, ReusedLayer>();
  private manifest: { bytes: Uint8Array; mediaType: string; digest: Digest } | undefined;
  private signatures: Uint8Array[] | undefined;
  private spoolDirectory: Promise<string> | undefined;
  private closed = false;

  constructor(
    readonly reference: ContainersStorageReference,
    private readonly store: ContainersStore,
    private readonly context: TransportContext = {},
  ) {}

  private directory(): Promise<string> {
    this.spoolDirectory ??= mkdtemp(
      join(this.context.temporaryDirectory ?? tmpdir(), 'gantry-containers-storage-'),
    );
    return this.spoolDirectory;
  }

  async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
    let result: { digest: Digest; size: number } | undefined;
    const onEnd = (value: { digest: Digest; size: number }) => {
      result = value;
    };
    if (options.isConfig) {
      const chunks: Uint8Array[] = [];
      await pipeline(
        stream,
        blobWriteStage(info.digest, onEnd),
        async (source: AsyncIterable<Uint8Array>) => {
          for await (const chunk of source) chunks.push(chunk);
        },
        options.signal ? { signal: options.signal } : {},
      );
      const bytes = Buffer.concat(chunks);
      this.checkSize(info, result!.size);
      this.configs.set(result!.digest, bytes);
      return {
        digest: result!.digest,
        size: result!.size,
        ...(info.mediaType ? { mediaType: info.mediaType } : {}),
      };
    }
    const directory = await this.directory();
    const path = join(directory, `blob-${this.spooled.size}-${Math.random().toString(36).slice(2)}`);
    try {
      await pipeline(
        stream,
        blobWriteStage(info.digest, onEnd),
        createWriteStream(path, { mode: 0o600 }),
        options.signal ? { signal: options.signal } : {},
      );
      this.checkSize(info, result!.size);
    } catch (error) {
      await rm(path, { force: true });
      throw error;
    }
    this.spooled.set(result!.digest, { path, size: result!.size });
    return {
      digest: result!.digest,
      size: result!.size,
      ...(info.mediaType ? { mediaType: info.mediaType } : {}),
    };
  }

  private checkSize(info: BlobToWrite, size: number): void {
    if (info.size >= 0 && info.size !== size) {
      throw new GantryError(
        ErrorCodes.SizeMismatch,
        `blob ${info.digest ?? ''}: size mismatch: expected ${info.size} bytes, got ${size}`,
      );
    }
  }

  async tryReusingBlob(info: BlobInfo, options: TryReusingBlobOptions): Promise<ReusedBlob> {
    if (options.isConfig) {
      const bytes = this.configs.get(info.digest);
      return bytes
        ? { reused: true, blob: { digest: info.digest, size: bytes.byteLength } }
        : { reused: false };
    }
    const spooled = this.spooled.get(info.digest);
    if (spooled) return { reused: true, blob: { digest: info.digest, size: spooled.size } };
    return this.store.withLayers(
      false,
      (table) => {
        const byCompressed = table.records.find(
          (layer) => layer['compressed-diff-digest'] === info.digest && layer['diff-digest'],
        );
        if (byCompressed) {
          this.reused.set(info.digest, { layerId: byCompressed.id, diffId: byCompressed['diff-digest']! });
          const size = info.size >= 0 ? info.size : (byCompressed['compressed-size'] ?? -1);
          return { reused: true, blob: { digest: info.digest, size } };
        }
        const byUncompressed = table.records.find((layer) => layer['diff-digest'] === info.digest);
        if (byUncompressed) {
          this.reused.set(info.digest, { layerId: byUncompressed.id, diffId: info.digest });
          const size = info.size >= 0 ? info.size : (byUncompressed['diff-size'] ?? -1);
          return { reused: true, blob: { digest: info.digest, size } };
        }
        return { reused: false };
      },
      { signal: options.signal },
    );
  }

  async putManifest(manifest: Uint8Array, mediaType: string, instanceDigest?: Digest): Promise<void> {
    if (instanceDigest !== undefined) {
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        'containers-storage stores one image per destination, not a list of images',
      );
    }
    if (mediaType !== MediaTypes.OciManifest && mediaType !== MediaTypes.DockerManifest) {
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        `containers-storage: manifest type ${mediaType} is not supported here (OCI or Docker schema 2 images only)`,
      );
    }
    this.manifest = { bytes: Uint8Array.from(manifest), mediaType, digest: manifestDigest(manifest) };
  }

  async putSignatures(signatures: Uint8Array[], instanceDigest?: Digest): Promise<void> {
    if (instanceDigest !== undefined) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        'containers-storage: signatures of list instances are not stored',
      );
    }
    this.signatures = signatures.map((signature) => Uint8Array.from(signature));
  }

  async commit(options: OperationOptions = {}): Promise<void> {
    const signal = options.signal ?? this.context.signal;
    if (!this.manifest)
      throw new GantryError(ErrorCodes.Internal, 'containers-storage: commit without a manifest');
    const { named } = this.reference;
    if (named?.digest && named.digest !== this.manifest.digest) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `Manifest to be saved does not match expected digest ${named.digest}`,
      );
    }
    const manifest = parseManifest(this.manifest.bytes, this.manifest.mediaType);
    const configInfo = manifest.config;
    if (!configInfo)
      throw new GantryError(ErrorCodes.InvalidManifest, 'containers-storage: the manifest has no config');
    const configBytes = this.configs.get(configInfo.digest);
    if (!configBytes) {
      throw new GantryError(
        ErrorCodes.BlobNotFound,
        `containers-storage: config ${configInfo.digest} was not written`,
      );
    }
    const config = parseImageConfig(configBytes);
    const diffIds = config.rootfs?.diff_ids ?? [];
    const nonEmptyLayers = manifest.layers.filter((layer) => !layer.emptyLayer);
    if (diffIds.length !== nonEmptyLayers.length) {
      throw new GantryError(
        ErrorCodes.InvalidManifest,
        `containers-storage: the config lists ${diffIds.length} DiffIDs for ${nonEmptyLayers.length} layers`,
      );
    }

    const created: string[] = [];
    try {
      let parent: string | undefined;
      for (const [index, layer] of nonEmptyLayers.entries()) {
        parent = await this.commitLayer(index, layer, diffIds[index]!, parent, created, signal);
      }
      await this.commitImage(configInfo.digest, configBytes, config.created, parent, signal);
    } catch (error) {
      await this.removeUnusedLayers(created).catch(() => undefined);
      throw error;
    }
  }

  /** Puts one layer in the store (or finds it there); returns its layer ID. */
  private async commitLayer(
    index: number,
    layer: BlobInfo,
    expectedDiffId: string,
    parent: string | undefined,
    created: string[],
    signal: AbortSignal | undefined,
  ): Promise<string> {
    const reused = this.reused.get(layer.digest);
    const spooled = this.spooled.get(layer.digest);
    if (reused && reused.diffId !== expectedDiffId) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `layer ${index} (blob ${layer.digest}) does not match config's DiffID "${expectedDiffId}"`,
      );
    }
    if (!reused && !spooled) {
      throw new GantryError(
        ErrorCodes.BlobNotFound,
        `containers-storage: layer blob ${layer.digest} was not written`,
      );
    }
    const id = layerIdFor(parent, expectedDiffId);
    return this.store.withLayers(
      true,
      async (table) => {
        const existing = table.byId(id);
        if (existing) return id;
        let contents: Readable;
        let compressed: { digest: string; size: number; compression: number } | undefined;
        if (spooled) {
          const prefix = await readPrefix(spooled.path);
          const compression = detectCompression(prefix);
          const file = createReadStream(spooled.path, { highWaterMark: 1 << 20 });
          contents = compression === 'none' ? file : file.pipe(createDecompressor(compression));
          if (compression !== 'none') file.on('error', (error) => contents.destroy(error));
          compressed = {
            digest: layer.digest,
            size: spooled.size,
            compression: layerCompressionCodes[compression],
          };
        } else {
          const source = table.byId(reused!.layerId);
          if (!source) {
            throw new GantryError(
              ErrorCodes.BlobNotFound,
              `containers-storage: layer ${reused!.layerId} disappeared`,
            );
          }
          contents = await openLayerDiff(this.store, source);
          if (source['compressed-diff-digest'] === layer.digest && (source['compressed-size'] ?? 0) > 0) {
            compressed = {
              digest: layer.digest,
              size: source['compressed-size']!,
              compression: source.compression ?? 0,
            };
          }
        }
        const record: LayerRecord = { id };
        if (parent) record.parent = parent;
        record.created = goTimestamp();
        record.flags = { [incompleteFlag]: true };
        table.records.push(record);
        table.save();
        created.push(id);
        try {
          await this.store.driver.createLayer(id, parent);
          const result = await this.store.driver.applyDiff(id, parent, contents, signal ? { signal } : {});
          if (result.uncompressedDigest !== expectedDiffId) {
            throw new GantryError(
              ErrorCodes.DigestMismatch,
              `layer ${index} (blob ${layer.digest}): its contents have digest ${result.uncompressedDigest}, the config's DiffID is ${expectedDiffId}`,
            );
          }
          atomicWriteFileSync(this.store.tarSplitPath(id), result.tarSplitGzip);
          delete record.flags;
          // As containers/storage records a layer put from a stream: the digest and size of what was
          // given (the uncompressed tar when the layer was rebuilt from another one), and the compression
          // detected (0, uncompressed, is left out as Go's omitempty does).
          record['compressed-diff-digest'] = compressed?.digest ?? result.uncompressedDigest;
          record['compressed-size'] = compressed?.size ?? result.uncompressedSize;
          record['diff-digest'] = result.uncompressedDigest;
          record['diff-size'] = result.uncompressedSize;
          if (compressed?.compression) record.compression = compressed.compression;
          if (result.uids.length) record.uidset = result.uids;
          if (result.gids.length) record.gidset = result.gids;
          reorderLayerRecord(record);
          table.save();
        } catch (error) {
          contents.destroy();
          await this.store.driver.removeLayer(id).catch(() => undefined);
          await rm(this.store.tarSplitPath(id), { force: true });
          const position = table.records.indexOf(record);
          if (position >= 0) table.records.splice(position, 1);
          table.save();
          created.pop();
          throw error;
        }
        return id;
      },
      { signal },
    );
  }

  private async commitImage(
    configDigest: Digest,
    configBytes: Uint8Array,
    configCreated: string | undefined,
    topLayer: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const intendedId = this.reference.id ?? encodedPart(configDigest);
    const manifestInfo = this.manifest!;
    const signatures = this.signatures ?? [];
    const signatureBlob = Buffer.concat(signatures);
    const sizes = signatures.map((signature) => signature.byteLength);
    const metadata = JSON.stringify({
      ...(sizes.length ? { 'signature-sizes': sizes } : {}),
      'signatures-sizes': { [manifestInfo.digest]: sizes },
    });
    const bigData: Array<{ key: string; data: Uint8Array; digest: string }> = [
      { key: configDigest, data: configBytes, digest: configDigest },
      { key: manifestBigDataKey(manifestInfo.digest), data: manifestInfo.bytes, digest: manifestInfo.digest },
      { key: imageDigestBigDataKey, data: manifestInfo.bytes, digest: manifestInfo.digest },
    ];
    if (signatureBlob.length) {
      bigData.push({ key: 'signatures', data: signatureBlob, digest: digestOf(signatureBlob) });
    }
    bigData.push({
      key: signatureBigDataKey(manifestInfo.digest),
      data: signatureBlob,
      digest: digestOf(signatureBlob),
    });
    const name = this.reference.named?.toString();
    // Layers first, then images, as containers/storage orders its locks.
    await this.store.withLayers(
      false,
      async (layers) => {
        if (topLayer && !layers.byId(topLayer)) {
          throw new GantryError(
            ErrorCodes.Internal,
            `containers-storage: layer ${topLayer} vanished before the image was created`,
          );
        }
        await this.store.withImages(
          true,
          (images) => {
            let image = images.byId(intendedId);
            if (image) {
              if ((image.layer ?? undefined) !== topLayer) {
                throw new GantryError(
                  ErrorCodes.Internal,
                  `image with ID "${intendedId}" already exists, but uses a different top layer`,
                );
              }
              image.metadata = metadata;
            } else {
              image = {
                id: intendedId,
                digest: manifestInfo.digest,
                ...(topLayer ? { layer: topLayer } : {}),
                metadata,
                'big-data-names': [],
                'big-data-sizes': {},
                'big-data-digests': {},
                created: configCreated ? goTimeText(configCreated) : goTimestamp(),
              };
              images.records.push(image);
            }
            for (const item of bigData) setImageBigData(this.store, image, item.key, item.data, item.digest);
            image.digest = manifestInfo.digest;
            if (name) addImageName(images.records, image, name);
            const position = images.records.indexOf(image);
            images.records[position] = sortedMaps(reorderImageRecord(image));
            images.save();
          },
          { signal },
        );
      },
      { signal },
    );
  }

  /** Removes layers this destination created that no image uses and that have no children. */
  private async removeUnusedLayers(created: string[]): Promise<void> {
    if (!created.length) return;
    await this.store.withLayers(true, async (layers) => {
      const images = this.store.readImagesUnlocked();
      const used = new Set<string>();
      for (const image of images) {
        if (image.layer) used.add(image.layer);
        for (const mapped of image['mapped-layers'] ?? []) used.add(mapped);
      }
      let changed = false;
      for (const id of [...created].reverse()) {
        if (used.has(id)) continue;
        if (layers.records.some((layer) => layer.parent === id)) continue;
        const position = layers.records.findIndex((layer) => layer.id === id);
        if (position < 0) continue;
        await this.store.driver.removeLayer(id);
        await rm(this.store.tarSplitPath(id), { force: true });
        layers.records.splice(position, 1);
        changed = true;
      }
      if (changed) layers.save();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.spoolDirectory) {
      const directory = await this.spoolDirectory.catch(() => undefined);
      if (directory) await rm(directory, { recursive: true, force: true });
    }
  }
}

/** Adds `name` to `image` (first in its names history) and takes it away from any other image, as podman re-tags. */
export function addImageName(images: ImageRecord[], image: ImageRecord, name: string): void {
  for (const other of images) {
    if (other !== image && other.names?.includes(name)) {
      other.names = other.names.filter((value) => value !== name);
      if (!other.names.length) delete other.names;
    }
  }
  const names = image.names ?? [];
  if (!names.includes(name)) names.push(name);
  image.names = names;
  image['names-history'] = [name, ...(image['names-history'] ?? []).filter((value) => value !== name)];
}

const imageFieldOrder = [
  'id',
  'digest',
  'names',
  'names-history',
  'layer',
  'mapped-layers',
  'metadata',
  'big-data-names',
  'big-data-sizes',
  'big-data-digests',
  'created',
  'flags',
];

const layerFieldOrder = [
  'id',
  'names',
  'parent',
  'metadata',
  'mountlabel',
  'created',
  'compressed-diff-digest',
  'compressed-size',
  'diff-digest',
  'toc-digest',
  'diff-size',
  'compression',
  'uidset',
  'gidset',
  'flags',
  'uidmap',
  'gidmap',
  'big-data-names',
];

function reorder<T extends Record<string, unknown>>(record: T, order: readonly string[]): T {
  const result: Record<string, unknown> = {};
  for (const key of order) if (record[key] !== undefined) result[key] = record[key];
  for (const [key, value] of Object.entries(record))
    if (!(key in result) && value !== undefined) result[key] = value;
  return result as T;
}

/** Puts an image record's fields in containers/storage's order (unknown fields last). */
export function reorderImageRecord(image: ImageRecord): ImageRecord {
  return reorder(image, imageFieldOrder);
}

/** Puts a layer record's fields in containers/storage's order, in place. */
function reorderLayerRecord(layer: LayerRecord): void {
  const ordered = reorder(layer, layerFieldOrder);
  for (const key of Object.keys(layer)) delete layer[key];
  Object.assign(layer, ordered);
}

async function readPrefix(path: string): Promise<Uint8Array> {
  const { open } = await import('node:fs/promises');
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(16);
    const { bytesRead } = await handle.read(buffer, 0, 16, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
