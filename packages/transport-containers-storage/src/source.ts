/**
 * Reading an image from a containers/storage store, as containers/image's storage source does: the
 * manifest and config from the image's big data, each layer rebuilt byte for byte as an uncompressed tar
 * from its tar-split plus the driver's files. `layerInfosForCopy` therefore describes the layers by their
 * uncompressed digests (the DiffIDs) and sizes, so a copy out of the store compresses them again for its
 * destination; the config and its DiffIDs stay the same.
 */
import { Readable } from 'node:stream';
import {
  type BlobInfo,
  type BlobStream,
  type Digest,
  ErrorCodes,
  GantryError,
  guessManifestMediaType,
  type ImageSource,
  type ImageSourceProperties,
  layerMediaTypeFor,
  type ManifestBlob,
  MediaTypes,
  parseManifest,
} from '@gantry/core/transport';
import { imageDigestBigDataKey, manifestBigDataKey, signatureBigDataKey } from './ids.js';
import { layerChain } from './images.js';
import { openLayerDiff } from './layer-content.js';
import type { ContainersStorageReference } from './reference.js';
import type { ContainersStore, ImageRecord, LayerRecord } from './store.js';

/** The largest manifest read from the store, as containers/image (`iolimits.MaxManifestBodySize`). */
const maximumManifestSize = 4 * 1024 * 1024;

export class ContainersStorageSource implements ImageSource {
  readonly properties: ImageSourceProperties = { hasThreadSafeGetBlob: true };
  private manifestCache: ManifestBlob | undefined;

  constructor(
    readonly reference: ContainersStorageReference,
    private readonly store: ContainersStore,
    private readonly image: ImageRecord,
  ) {}

  private hasBigData(key: string): boolean {
    return (this.image['big-data-names'] ?? []).includes(key);
  }

  private async bigData(key: string, limit?: number): Promise<Buffer> {
    try {
      return await this.store.readBigData(this.image.id, key, limit);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new GantryError(
          ErrorCodes.ImageNotFound,
          `image ${this.image.id}: big data item "${key}" is missing from the store`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  async getManifest(instanceDigest?: Digest): Promise<ManifestBlob> {
    if (instanceDigest !== undefined) {
      const key = manifestBigDataKey(instanceDigest);
      if (!this.hasBigData(key)) {
        throw new GantryError(
          ErrorCodes.ImageNotFound,
          `image ${this.image.id} has no manifest ${instanceDigest}`,
        );
      }
      const bytes = await this.bigData(key, maximumManifestSize);
      return { bytes, mediaType: guessManifestMediaType(bytes) };
    }
    if (this.manifestCache) return this.manifestCache;
    let key = imageDigestBigDataKey;
    const digest = this.reference.named?.digest;
    if (digest && this.hasBigData(manifestBigDataKey(digest))) key = manifestBigDataKey(digest);
    else if (
      !this.hasBigData(key) &&
      this.image.digest &&
      this.hasBigData(manifestBigDataKey(this.image.digest))
    ) {
      key = manifestBigDataKey(this.image.digest);
    }
    const bytes = await this.bigData(key, maximumManifestSize);
    this.manifestCache = { bytes, mediaType: guessManifestMediaType(bytes) };
    return this.manifestCache;
  }

  private async layers(): Promise<LayerRecord[]> {
    return this.store.withLayers(false, (table) => layerChain(table.records, this.image.layer));
  }

  async layerInfosForCopy(instanceDigest?: Digest): Promise<BlobInfo[] | undefined> {
    const { bytes, mediaType } = await this.getManifest(instanceDigest);
    const manifest = parseManifest(bytes, mediaType);
    const chain = await this.layers();
    const nonEmpty = manifest.layers.filter((layer) => !layer.emptyLayer);
    if (nonEmpty.length !== chain.length) {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `image ${this.image.id}: the manifest lists ${nonEmpty.length} layers, the store has ${chain.length}`,
      );
    }
    let position = 0;
    return manifest.layers.map((layer) => {
      if (layer.emptyLayer) return { ...layer };
      const stored = chain[position++]!;
      const diffId = stored['diff-digest'];
      const size = stored['diff-size'];
      if (!diffId || size === undefined) {
        throw new GantryError(
          ErrorCodes.InvalidLayout,
          `layer ${stored.id} has no uncompressed digest or size in layers.json`,
        );
      }
      const info: BlobInfo = {
        digest: diffId as Digest,
        size,
        mediaType: layerMediaTypeFor(
          mediaType === MediaTypes.OciManifest ? MediaTypes.OciManifest : MediaTypes.DockerManifest,
          'none',
          layer.mediaType,
        ),
      };
      if (layer.annotations) info.annotations = layer.annotations;
      return info;
    });
  }

  async getBlob(info: BlobInfo): Promise<BlobStream> {
    const configKey = info.digest;
    if (this.hasBigData(configKey)) {
      const bytes = await this.bigData(configKey);
      return { stream: Readable.from([bytes]), size: bytes.byteLength };
    }
    const chain = await this.layers();
    const layer =
      chain.find((candidate) => candidate['diff-digest'] === info.digest) ??
      chain.find((candidate) => candidate['compressed-diff-digest'] === info.digest);
    if (!layer) {
      throw new GantryError(
        ErrorCodes.BlobNotFound,
        `blob ${info.digest} is not a layer of image ${this.image.id}`,
      );
    }
    // Only the uncompressed form can be rebuilt; the pipeline asks for it through layerInfosForCopy.
    if (layer['diff-digest'] !== info.digest) {
      throw new GantryError(
        ErrorCodes.BlobNotFound,
        `blob ${info.digest}: containers-storage keeps layers uncompressed; read layer ${layer.id} as ${layer['diff-digest']}`,
      );
    }
    const stream = await openLayerDiff(this.store, layer);
    return { stream, size: layer['diff-size'] ?? -1 };
  }

  async getSignatures(instanceDigest?: Digest): Promise<Uint8Array[]> {
    const manifestDigest = instanceDigest ?? (await this.currentManifestDigest());
    let metadata: { 'signature-sizes'?: number[]; 'signatures-sizes'?: Record<string, number[]> } = {};
    if (this.image.metadata) {
      try {
        metadata = JSON.parse(this.image.metadata);
      } catch {
        metadata = {};
      }
    }
    let key: string | undefined;
    let sizes: number[] | undefined;
    if (manifestDigest && metadata['signatures-sizes']?.[manifestDigest]) {
      key = signatureBigDataKey(manifestDigest);
      sizes = metadata['signatures-sizes'][manifestDigest];
    } else if (instanceDigest === undefined && metadata['signature-sizes']) {
      key = 'signatures';
      sizes = metadata['signature-sizes'];
    }
    if (!key || !sizes?.length || !this.hasBigData(key)) return [];
    const blob = await this.bigData(key);
    const signatures: Uint8Array[] = [];
    let offset = 0;
    for (const size of sizes) {
      if (offset + size > blob.length) {
        throw new GantryError(
          ErrorCodes.InvalidLayout,
          `image ${this.image.id}: signature data is shorter than its recorded sizes`,
        );
      }
      signatures.push(blob.subarray(offset, offset + size));
      offset += size;
    }
    return signatures;
  }

  private async currentManifestDigest(): Promise<string | undefined> {
    return (
      this.reference.named?.digest ??
      this.image.digest ??
      this.image['big-data-digests']?.[imageDigestBigDataKey]
    );
  }

  async close(): Promise<void> {}
}
