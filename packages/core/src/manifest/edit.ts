import { type Digest, digestOf } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import type { BlobInfo } from '../transport/contract.js';
import { ociConfigBytesFromDockerConfig, schema1ToSchema2Config, topLevelRawEntries } from './config.js';
import { normalizeManifestMediaType } from './digests.js';
import { goJsonMarshal, goJsonMarshalWithRaw, goTimeRoundTrip, goZeroTime, RawJson } from './go-json.js';
import { isManifestListMediaType, MediaTypes } from './media-types.js';
import {
  decodeJsonObject,
  decodeSchema1,
  type ImageManifest,
  isJsonObject,
  type JsonObject,
  layerCompressionOf,
  type ManifestList,
} from './parse.js';
import { hostPlatform } from './platform.js';
import { signSchema1Manifest } from './schema1-sign.js';

/** Layer compression a destination layer can have. */
export type TargetCompression = 'gzip' | 'zstd' | 'none';

function conversionFailed(message: string): GantryError {
  return new GantryError(ErrorCodes.ManifestConversionFailed, message);
}

const ociNondistributable: readonly string[] = [
  MediaTypes.OciLayerNondistributable,
  MediaTypes.OciLayerNondistributableGzip,
  MediaTypes.OciLayerNondistributableZstd,
];
const dockerForeign: readonly string[] = [MediaTypes.DockerLayerForeign, MediaTypes.DockerLayerForeignGzip];
/** Layer media types whose family (regular or non-distributable) Gantry knows. */
const knownLayerMediaTypes: readonly string[] = [
  MediaTypes.OciLayer,
  MediaTypes.OciLayerGzip,
  MediaTypes.OciLayerZstd,
  MediaTypes.DockerLayer,
  MediaTypes.DockerLayerGzip,
  ...ociNondistributable,
  ...dockerForeign,
];

/**
 * The media type of a layer with `compression` in a manifest of type `manifestMediaType`, keeping
 * the non-distributable / foreign family of `original` (either OCI's or Docker's name). Docker
 * schema2 and schema1 cannot carry zstd layers: `ERR_GANTRY_MANIFEST_CONVERSION_FAILED`. Schema1
 * has no layer media types: returns ''. An `original` that is not a known layer type (encrypted,
 * artifact blobs…) cannot be re-typed: `ERR_GANTRY_MANIFEST_CONVERSION_FAILED`.
 */
export function layerMediaTypeFor(
  manifestMediaType: string,
  compression: TargetCompression,
  original?: string,
): string {
  if (original !== undefined && original !== '' && !knownLayerMediaTypes.includes(original)) {
    throw conversionFailed(
      `cannot change layer of unknown MIME type "${original}" to ${compression} compression for ${manifestMediaType}`,
    );
  }
  const foreign =
    original !== undefined && (ociNondistributable.includes(original) || dockerForeign.includes(original));
  switch (manifestMediaType) {
    case MediaTypes.OciManifest:
      if (foreign) {
        return compression === 'gzip'
          ? MediaTypes.OciLayerNondistributableGzip
          : compression === 'zstd'
            ? MediaTypes.OciLayerNondistributableZstd
            : MediaTypes.OciLayerNondistributable;
      }
      return compression === 'gzip'
        ? MediaTypes.OciLayerGzip
        : compression === 'zstd'
          ? MediaTypes.OciLayerZstd
          : MediaTypes.OciLayer;
    case MediaTypes.DockerManifest:
      if (compression === 'zstd') {
        throw conversionFailed(
          `zstd compression is not supported for docker images (layer of type "${original ?? ''}")`,
        );
      }
      if (foreign)
        return compression === 'gzip' ? MediaTypes.DockerLayerForeignGzip : MediaTypes.DockerLayerForeign;
      return compression === 'gzip' ? MediaTypes.DockerLayerGzip : MediaTypes.DockerLayer;
    case MediaTypes.DockerSchema1:
    case MediaTypes.DockerSchema1Signed:
      if (compression === 'zstd')
        throw conversionFailed('zstd compression is not supported for schema1 images');
      return '';
    default:
      throw conversionFailed(`unsupported manifest type "${manifestMediaType}" for layers`);
  }
}

/** True when converting `manifest` to `targetMediaType` needs the layers' uncompressed digests (schema1 -> schema2/OCI). */
export function needsLayerDiffIds(manifest: ImageManifest, targetMediaType: string): boolean {
  const schema1 =
    manifest.mediaType === MediaTypes.DockerSchema1 || manifest.mediaType === MediaTypes.DockerSchema1Signed;
  return (
    schema1 && (targetMediaType === MediaTypes.DockerManifest || targetMediaType === MediaTypes.OciManifest)
  );
}

/** A layer as it will be in the destination. */
export interface LayerEdit {
  digest: Digest;
  size: number;
  compression: TargetCompression;
  /** The media type to write; by default chosen from the target manifest type and `compression`. */
  mediaType?: string;
  /** Annotations (OCI) to write; by default the original's when the digest is unchanged, none otherwise (as skopeo). */
  annotations?: Record<string, string>;
  /** URLs to write; by default none (skopeo keeps URLs only for foreign layers it did not copy). */
  urls?: string[];
}

/** Changes to make to a manifest. */
export interface ManifestEdit {
  /** Convert to this manifest type. */
  mediaType?: string;
  /**
   * Same count and order as `manifest.layers` (schema1: including empty layers). Ignored when every
   * digest is unchanged and no layer sets annotations/urls (skopeo then keeps the layers as they are).
   */
  layers?: LayerEdit[];
  /** Uncompressed digests of every layer (same count/order as `manifest.layers`), needed when `needsLayerDiffIds()`. */
  layerDiffIds?: Digest[];
  /** The source config bytes (needed to convert Docker schema2 to OCI, whose config is re-encoded). */
  config?: Uint8Array;
  /**
   * For a conversion to schema1: the destination's docker reference, whose path and tag become the
   * manifest's `name` and `tag` (both empty without one, as containers/image writes them for `dir:`).
   */
  schema1Reference?: { path: string; tag?: string };
}

export interface EditedManifest {
  bytes: Uint8Array;
  mediaType: string;
  digest: Digest;
  /** Set when a new config blob must be written (conversions that change the config). */
  config?: { bytes: Uint8Array; info: BlobInfo };
  /** Layer blobs the manifest names that must be written too (schema1's gzipped empty layer). */
  extraLayers?: Array<{ bytes: Uint8Array; info: BlobInfo }>;
}

/** The gzipped empty tar containers/image (and Docker) use for schema1's empty layers. */
export const gzippedEmptyLayer: Uint8Array = new Uint8Array([
  31, 139, 8, 0, 0, 9, 110, 136, 0, 255, 98, 24, 5, 163, 96, 20, 140, 88, 0, 8, 0, 0, 255, 255, 46, 175, 181,
  239, 0, 4, 0, 0,
]);
/** The digest of `gzippedEmptyLayer`. */
export const gzippedEmptyLayerDigest =
  'sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4' as Digest;

const encoder = new TextEncoder();

function finish(
  value: unknown,
  mediaType: string,
  config?: Uint8Array,
  configMediaType?: string,
): EditedManifest {
  const bytes = encoder.encode(goJsonMarshal(value));
  const result: EditedManifest = { bytes, mediaType, digest: digestOf(bytes) };
  if (config !== undefined) {
    result.config = {
      bytes: config,
      info: { digest: digestOf(config), size: config.byteLength, mediaType: configMediaType! },
    };
  }
  return result;
}

function stringMapValue(value: unknown): Map<string, unknown> | undefined {
  if (!isJsonObject(value) || Object.keys(value).length === 0) return undefined;
  return new Map(Object.entries(value));
}

function nonEmptyArray(value: unknown): unknown[] | undefined {
  return Array.isArray(value) && value.length > 0 ? value : undefined;
}

/** An OCI platform object laid out as image-spec's `Platform` struct. */
function ociPlatformValue(value: JsonObject): Record<string, unknown> {
  return {
    architecture: typeof value.architecture === 'string' ? value.architecture : '',
    os: typeof value.os === 'string' ? value.os : '',
    'os.version': value['os.version'] || undefined,
    'os.features': nonEmptyArray(value['os.features']),
    variant: value.variant || undefined,
  };
}

/** An OCI descriptor laid out as image-spec's `Descriptor` struct (unknown fields dropped, like Go). */
function ociDescriptorValue(value: JsonObject): Record<string, unknown> {
  return {
    mediaType: value.mediaType ?? '',
    digest: value.digest ?? '',
    size: value.size ?? 0,
    urls: nonEmptyArray(value.urls),
    annotations: stringMapValue(value.annotations),
    data: typeof value.data === 'string' && value.data !== '' ? value.data : undefined,
    platform: isJsonObject(value.platform) ? ociPlatformValue(value.platform) : undefined,
    artifactType: value.artifactType || undefined,
  };
}

/** A Docker schema2 descriptor laid out as containers/image's `Schema2Descriptor`. */
function schema2DescriptorValue(value: JsonObject): Record<string, unknown> {
  return {
    mediaType: value.mediaType ?? '',
    size: value.size ?? 0,
    digest: value.digest ?? '',
    urls: nonEmptyArray(value.urls),
  };
}

function ociManifestValue(
  object: JsonObject,
  config: JsonObject,
  layers: JsonObject[],
  mediaType?: string,
): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: mediaType ?? (object.mediaType || undefined),
    artifactType: object.artifactType || undefined,
    config: ociDescriptorValue(config),
    layers: layers.map(ociDescriptorValue),
    subject: isJsonObject(object.subject) ? ociDescriptorValue(object.subject) : undefined,
    annotations: stringMapValue(object.annotations),
  };
}

function schema2ManifestValue(config: JsonObject, layers: JsonObject[]): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: MediaTypes.DockerManifest,
    config: schema2DescriptorValue(config),
    layers: layers.map(schema2DescriptorValue),
  };
}

function checkLayerEdits(manifest: ImageManifest, edit: ManifestEdit): void {
  if (edit.layers !== undefined && edit.layers.length !== manifest.layers.length) {
    throw conversionFailed(
      `preparing updated manifest: layer count changed from ${manifest.layers.length} to ${edit.layers.length}`,
    );
  }
}

/** Applies layer edits to layer descriptor objects of a manifest of type `targetType`. */
function applyLayerEdits(
  layers: JsonObject[],
  edits: LayerEdit[] | undefined,
  targetType: string,
): JsonObject[] {
  if (edits === undefined) return layers;
  return layers.map((layer, index) => {
    const layerEdit = edits[index]!;
    const original = typeof layer.mediaType === 'string' ? layer.mediaType : '';
    let mediaType = layerEdit.mediaType;
    if (mediaType === undefined) {
      // Unknown types (artifact blobs, encrypted layers) are kept as they are, as containers/image
      // does when the compression is preserved.
      mediaType =
        !knownLayerMediaTypes.includes(original) || layerCompressionOf(original) === layerEdit.compression
          ? original
          : layerMediaTypeFor(targetType, layerEdit.compression, original);
    }
    // As skopeo: a changed blob loses the original's annotations; URLs only stay when the edit names them.
    const annotations =
      layerEdit.annotations ?? (layerEdit.digest === layer.digest ? layer.annotations : undefined);
    return {
      ...layer,
      mediaType,
      digest: layerEdit.digest,
      size: layerEdit.size,
      annotations,
      urls: layerEdit.urls,
    };
  });
}

/**
 * The layer edits to apply: none when every digest is unchanged and no layer sets annotations or
 * URLs, because skopeo then leaves the layers as they are (`layerDigestsDiffer`); an explicit
 * `mediaType` alone does not count (conversions map the types themselves).
 */
function effectiveLayerEdits(
  manifest: ImageManifest,
  edits: LayerEdit[] | undefined,
): LayerEdit[] | undefined {
  if (edits === undefined) return undefined;
  const changed = edits.some(
    (layerEdit, index) =>
      layerEdit.digest !== manifest.layers[index]!.digest ||
      layerEdit.annotations !== undefined ||
      layerEdit.urls !== undefined,
  );
  return changed ? edits : undefined;
}

function dockerLayerFromOci(original: string): string {
  switch (original) {
    case MediaTypes.OciLayerNondistributable:
      return MediaTypes.DockerLayerForeign;
    case MediaTypes.OciLayerNondistributableGzip:
      return MediaTypes.DockerLayerForeignGzip;
    case MediaTypes.OciLayer:
      return MediaTypes.DockerLayer;
    case MediaTypes.OciLayerGzip:
      return MediaTypes.DockerLayerGzip;
    case MediaTypes.OciLayerZstd:
    case MediaTypes.OciLayerNondistributableZstd:
      throw conversionFailed(
        `Error during manifest conversion: "${original}": zstd compression is not supported for docker images`,
      );
    default:
      if (original.startsWith('application/vnd.oci.image.layer.') && original.includes('+encrypted')) {
        throw conversionFailed(
          `during manifest conversion: encrypted layers ("${original}") are not supported in docker images`,
        );
      }
      throw conversionFailed(`Unknown media type during manifest conversion: "${original}"`);
  }
}

function ociLayerFromDocker(original: string): string {
  switch (original) {
    case MediaTypes.DockerLayerForeign:
      return MediaTypes.OciLayerNondistributable;
    case MediaTypes.DockerLayerForeignGzip:
      return MediaTypes.OciLayerNondistributableGzip;
    case MediaTypes.DockerLayer:
      return MediaTypes.OciLayer;
    case MediaTypes.DockerLayerGzip:
      return MediaTypes.OciLayerGzip;
    default:
      throw conversionFailed(`Unknown media type during manifest conversion: "${original}"`);
  }
}

function ociToSchema2(manifest: ImageManifest, edit: ManifestEdit): EditedManifest {
  const layerEdits = effectiveLayerEdits(manifest, edit.layers);
  const object = decodeJsonObject(manifest.bytes, 'OCI image manifest');
  const config = object.config as JsonObject;
  if (config.mediaType !== MediaTypes.OciConfig) {
    throw conversionFailed(
      `cannot convert an OCI artifact (config media type "${String(config.mediaType)}") to ${MediaTypes.DockerManifest}: only images can be converted`,
    );
  }
  const layers = (object.layers as JsonObject[]).map((layer, index) => {
    const layerEdit = layerEdits?.[index];
    let original = layer.mediaType as string;
    // zstd layers are edited while still OCI (as containers/image does), so that a recompression to gzip converts.
    if (layerEdit && layerCompressionOf(original) === 'zstd' && layerEdit.compression !== 'zstd') {
      original = layerMediaTypeFor(MediaTypes.OciManifest, layerEdit.compression, original);
    }
    return { ...layer, mediaType: dockerLayerFromOci(original) };
  });
  const edited = applyLayerEdits(layers, layerEdits, MediaTypes.DockerManifest);
  return finish(
    schema2ManifestValue({ ...config, mediaType: MediaTypes.DockerConfig }, edited),
    MediaTypes.DockerManifest,
  );
}

function schema2ToOci(manifest: ImageManifest, edit: ManifestEdit): EditedManifest {
  if (edit.config === undefined) {
    throw conversionFailed(
      `converting ${MediaTypes.DockerManifest} to ${MediaTypes.OciManifest} needs the image config`,
    );
  }
  const object = decodeJsonObject(manifest.bytes, 'Docker schema2 manifest');
  const configBytes = ociConfigBytesFromDockerConfig(edit.config);
  const configDescriptor = {
    mediaType: MediaTypes.OciConfig,
    digest: digestOf(configBytes),
    size: configBytes.byteLength,
  };
  const layers = (object.layers as JsonObject[]).map((layer) => ({
    mediaType: ociLayerFromDocker(layer.mediaType as string),
    digest: layer.digest,
    size: layer.size,
    urls: layer.urls,
  }));
  const edited = applyLayerEdits(layers, effectiveLayerEdits(manifest, edit.layers), MediaTypes.OciManifest);
  return finish(
    ociManifestValue({}, configDescriptor, edited, MediaTypes.OciManifest),
    MediaTypes.OciManifest,
    configBytes,
    MediaTypes.OciConfig,
  );
}

function schema1ToNewer(manifest: ImageManifest, edit: ManifestEdit, target: string): EditedManifest {
  const decoded = decodeSchema1(manifest.bytes);
  const count = decoded.blobSums.length;
  if (edit.layerDiffIds === undefined || edit.layerDiffIds.length !== count) {
    throw conversionFailed(
      `converting a schema1 manifest to ${target} needs the uncompressed digests of its ${count} layers (got ${edit.layerDiffIds?.length ?? 0})`,
    );
  }
  if (edit.layers === undefined) {
    throw conversionFailed(`converting a schema1 manifest to ${target} needs the layers' sizes`);
  }
  const diffIds: Digest[] = [];
  const layers: JsonObject[] = [];
  const layerEdits: LayerEdit[] = [];
  for (let v1Index = count - 1; v1Index >= 0; v1Index--) {
    const index = count - 1 - v1Index;
    if (decoded.compatibility[v1Index]!.throwAway) continue;
    layers.push({
      mediaType: MediaTypes.DockerLayerGzip,
      size: edit.layers[index]!.size,
      digest: decoded.blobSums[v1Index]!,
    });
    layerEdits.push(edit.layers[index]!);
    diffIds.push(edit.layerDiffIds[index]!);
  }
  const schema2Config = schema1ToSchema2Config(decoded, diffIds);
  if (target === MediaTypes.DockerManifest) {
    const config = {
      mediaType: MediaTypes.DockerConfig,
      size: schema2Config.byteLength,
      digest: digestOf(schema2Config),
    };
    const edited = applyLayerEdits(layers, layerEdits, MediaTypes.DockerManifest);
    return finish(
      schema2ManifestValue(config, edited),
      MediaTypes.DockerManifest,
      schema2Config,
      MediaTypes.DockerConfig,
    );
  }
  const ociConfig = ociConfigBytesFromDockerConfig(schema2Config);
  const config = { mediaType: MediaTypes.OciConfig, digest: digestOf(ociConfig), size: ociConfig.byteLength };
  const ociLayers = layers.map((layer) => ({ ...layer, mediaType: MediaTypes.OciLayerGzip }));
  const edited = applyLayerEdits(ociLayers, layerEdits, MediaTypes.OciManifest);
  return finish(
    ociManifestValue({}, config, edited, MediaTypes.OciManifest),
    MediaTypes.OciManifest,
    ociConfig,
    MediaTypes.OciConfig,
  );
}

/** sha256 of the blob digest's hex and `others`, joined by spaces: the v1 IDs Docker made up. */
function v1IdOf(blobDigest: Digest, ...others: string[]): string {
  const hex = blobDigest.slice(blobDigest.indexOf(':') + 1);
  return digestOf(new TextEncoder().encode([hex, ...others].join(' '))).slice('sha256:'.length);
}

/**
 * containers/image's `convertToManifestSchema1` (schema2, and OCI through schema2): one fsLayer and
 * v1Compatibility entry per config history entry (top first), empty-layer entries pointing at the
 * gzipped empty layer (returned in `extraLayers`), made-up v1 IDs chained through `parent`, and the top
 * entry carrying the config without `rootfs` and `history`. Signed with a fresh key.
 */
function toSchema1(manifest: ImageManifest, edit: ManifestEdit): EditedManifest {
  if (edit.config === undefined) {
    throw conversionFailed(
      `converting ${manifest.mediaType} to ${MediaTypes.DockerSchema1Signed} needs the image config`,
    );
  }
  const object = decodeJsonObject(manifest.bytes, 'manifest');
  const config = object.config as JsonObject;
  if (manifest.mediaType === MediaTypes.OciManifest && config.mediaType !== MediaTypes.OciConfig) {
    throw conversionFailed(
      `cannot convert an OCI artifact (config media type "${String(config.mediaType)}") to ${MediaTypes.DockerSchema1Signed}: only images can be converted`,
    );
  }
  const layerEdits = effectiveLayerEdits(manifest, edit.layers);
  const layers = (object.layers as JsonObject[]).map((layer, index) => {
    const layerEdit = layerEdits?.[index];
    const compression = layerEdit?.compression ?? layerCompressionOf(String(layer.mediaType ?? ''));
    if (compression === 'zstd') {
      throw conversionFailed(
        `zstd compression is not supported for schema1 images (layer ${String(layer.digest)})`,
      );
    }
    if (String(layer.mediaType ?? '').includes('+encrypted')) {
      throw conversionFailed('encrypted layers are not supported in schema1 images');
    }
    return { digest: (layerEdit?.digest ?? layer.digest) as Digest };
  });
  const configText = new TextDecoder().decode(edit.config);
  let imageConfig: JsonObject;
  try {
    const parsed = JSON.parse(configText) as unknown;
    if (!isJsonObject(parsed)) throw new TypeError('not a JSON object');
    imageConfig = parsed;
  } catch (error) {
    throw conversionFailed(`converting to schema1: invalid image config: ${(error as Error).message}`);
  }
  const history = Array.isArray(imageConfig.history) ? (imageConfig.history as unknown[]) : [];
  if (history.length === 0) {
    throw conversionFailed(
      `Cannot convert an image with 0 history entries to ${MediaTypes.DockerSchema1Signed}`,
    );
  }
  const count = history.length;
  const fsLayers = new Array<{ blobSum: Digest }>(count);
  const v1Compatibility = new Array<string>(count);
  let nonEmptyIndex = 0;
  let parent = '';
  let v1Id = '';
  let usesEmptyLayer = false;
  for (const [v2Index, rawEntry] of history.entries()) {
    const entry = isJsonObject(rawEntry) ? rawEntry : {};
    parent = v1Id;
    const v1Index = count - 1 - v2Index;
    let blobDigest: Digest;
    const emptyLayer = entry.empty_layer === true;
    if (emptyLayer) {
      blobDigest = gzippedEmptyLayerDigest;
      usesEmptyLayer = true;
    } else {
      if (nonEmptyIndex >= layers.length) {
        throw conversionFailed(
          `Invalid image configuration, needs more than the ${layers.length} distributed layers`,
        );
      }
      blobDigest = layers[nonEmptyIndex]!.digest;
      nonEmptyIndex++;
    }
    v1Id = v1IdOf(blobDigest, parent);
    const text = (value: unknown) => (typeof value === 'string' ? value : '');
    let created = goZeroTime;
    if (typeof entry.created === 'string') {
      try {
        created = goTimeRoundTrip(entry.created);
      } catch (error) {
        throw conversionFailed(
          `converting to schema1: history entry ${v2Index}: ${(error as Error).message}`,
        );
      }
    }
    const fake: Record<string, unknown> = { id: v1Id };
    if (parent !== '') fake.parent = parent;
    if (text(entry.comment) !== '') fake.comment = text(entry.comment);
    fake.created = created;
    fake.container_config = { Cmd: [text(entry.created_by)] };
    if (text(entry.author) !== '') fake.author = text(entry.author);
    if (emptyLayer) fake.throwaway = true;
    fsLayers[v1Index] = { blobSum: blobDigest };
    v1Compatibility[v1Index] = goJsonMarshal(fake);
  }
  // The top entry: the real config, without rootfs and history, with its own v1 ID.
  const topId = v1IdOf(fsLayers[0]!.blobSum, parent, configText);
  const raw = new Map<string, unknown>();
  for (const [key, value] of topLevelRawEntries(configText)) raw.set(key, new RawJson(value));
  raw.delete('rootfs');
  raw.delete('history');
  raw.set('id', topId);
  if (parent !== '') raw.set('parent', parent);
  if ((history[count - 1] as JsonObject | undefined)?.empty_layer === true) raw.set('throwaway', true);
  v1Compatibility[0] = goJsonMarshalWithRaw(raw);

  const payload = goJsonMarshal({
    name: edit.schema1Reference?.path ?? '',
    tag: edit.schema1Reference?.tag ?? '',
    architecture: typeof imageConfig.architecture === 'string' ? imageConfig.architecture : '',
    fsLayers,
    history: v1Compatibility.map((value) => ({ v1Compatibility: value })),
    schemaVersion: 1,
  });
  const payloadBytes = new TextEncoder().encode(payload);
  const result: EditedManifest = {
    bytes: signSchema1Manifest(payloadBytes),
    mediaType: MediaTypes.DockerSchema1Signed,
    digest: digestOf(payloadBytes),
  };
  if (usesEmptyLayer) {
    result.extraLayers = [
      {
        bytes: gzippedEmptyLayer,
        info: {
          digest: gzippedEmptyLayerDigest,
          size: gzippedEmptyLayer.byteLength,
          mediaType: MediaTypes.DockerLayerGzip,
        },
      },
    ];
  }
  return result;
}

/**
 * Edits and/or converts a manifest as containers/image's `UpdatedImage` does, serialising the result
 * like Go's encoding/json (struct field order, omitempty, no indentation) so that digests equal
 * skopeo's. When nothing changes (same type, same layers), returns the original bytes.
 *
 * - OCI <-> Docker schema2: layer types are mapped (non-distributable <-> foreign), OCI artifacts,
 *   zstd and encrypted layers cannot be represented in schema2. OCI -> schema2 keeps the config
 *   blob (only its media type changes); schema2 -> OCI re-encodes the config as image-spec's `Image`
 *   struct (as containers/image does), returned in `config` and needing `edit.config`.
 * - schema1 -> schema2/OCI: builds the config from the v1Compatibility history and
 *   `edit.layerDiffIds`, drops empty (throwaway) layers; needs `edit.layers` (sizes).
 * - schema2/OCI -> schema1 (signed): as `toSchema1`; needs `edit.config`. Edits of schema1 layers are
 *   not supported (`ERR_GANTRY_MANIFEST_CONVERSION_FAILED`).
 * - Layer edits: digest and size replaced; media type from `mediaType`, or from the target type and
 *   `compression` keeping the non-distributable family; annotations and URLs as `LayerEdit` says.
 */
export function editManifest(manifest: ImageManifest, edit: ManifestEdit): EditedManifest {
  checkLayerEdits(manifest, edit);
  const source = manifest.mediaType;
  const target = edit.mediaType === undefined || edit.mediaType === '' ? source : edit.mediaType;
  const schema1 = (type: string) =>
    type === MediaTypes.DockerSchema1 || type === MediaTypes.DockerSchema1Signed;
  if (schema1(source) && schema1(target)) {
    if (effectiveLayerEdits(manifest, edit.layers) !== undefined) {
      throw conversionFailed('editing the layers of a schema1 manifest is not supported');
    }
    if (target !== source) throw conversionFailed(`converting ${source} to ${target} is not supported`);
    return { bytes: manifest.bytes, mediaType: source, digest: manifest.digest };
  }
  if (schema1(target)) {
    if (source !== MediaTypes.DockerManifest && source !== MediaTypes.OciManifest) {
      throw conversionFailed(`converting ${source} to ${target} is not supported`);
    }
    return toSchema1(manifest, edit);
  }
  if (target !== MediaTypes.OciManifest && target !== MediaTypes.DockerManifest) {
    throw conversionFailed(`Unsupported conversion type: ${target}`);
  }
  if (schema1(source)) return schema1ToNewer(manifest, edit, target);
  if (source === target) {
    const layerEdits = effectiveLayerEdits(manifest, edit.layers);
    if (layerEdits === undefined) {
      return { bytes: manifest.bytes, mediaType: source, digest: manifest.digest };
    }
    const object = decodeJsonObject(manifest.bytes, 'manifest');
    const layers = applyLayerEdits(object.layers as JsonObject[], layerEdits, target);
    const value =
      target === MediaTypes.OciManifest
        ? ociManifestValue(object, object.config as JsonObject, layers)
        : schema2ManifestValue(object.config as JsonObject, layers);
    return finish(value, target);
  }
  if (source === MediaTypes.OciManifest) return ociToSchema2(manifest, edit);
  if (source === MediaTypes.DockerManifest) return schema2ToOci(manifest, edit);
  throw conversionFailed(`Unsupported conversion from ${source} to ${target}`);
}

/** Changes to make to a manifest list. */
export interface ManifestListEdit {
  /** Convert to this list type. */
  mediaType?: string;
  /** New digest, size and media type of instances, keyed by their current digest. */
  instances?: Map<Digest, { digest: Digest; size: number; mediaType: string }>;
  /** Keep only these instances (current digests), in list order. */
  keepOnly?: Digest[];
}

/**
 * Edits and/or converts a manifest list and serialises it as containers/image's `Serialize` does
 * (Go struct layout, compact). When nothing changes (same type, every instance kept unchanged) the
 * original bytes are returned, as skopeo keeps them.
 * OCI index -> Docker list keeps digests, sizes, media types, urls and platforms (an instance
 * without a platform gets the host's os/architecture, as containers/image) and drops annotations;
 * Docker list -> OCI index keeps the same and drops the Docker-only `features`.
 */
export function editManifestList(
  list: ManifestList,
  edit: ManifestListEdit,
): { bytes: Uint8Array; mediaType: string; digest: Digest } {
  const target = edit.mediaType === undefined || edit.mediaType === '' ? list.mediaType : edit.mediaType;
  if (!isManifestListMediaType(target)) {
    throw conversionFailed(
      `Can not convert manifest list to MIME type "${target}", which is not a list type`,
    );
  }
  const changesInstances =
    edit.keepOnly !== undefined
      ? list.instances.some((instance) => !edit.keepOnly!.includes(instance.digest))
      : false;
  const replacesInstances = list.instances.some((instance) => {
    const replacement = edit.instances?.get(instance.digest);
    return (
      replacement !== undefined &&
      (replacement.digest !== instance.digest ||
        replacement.size !== instance.size ||
        replacement.mediaType !== instance.mediaType)
    );
  });
  if (target === list.mediaType && !changesInstances && !replacesInstances) {
    return { bytes: list.bytes, mediaType: list.mediaType, digest: list.digest };
  }
  const object = decodeJsonObject(list.bytes, 'manifest list');
  let entries = (object.manifests as JsonObject[]).map((entry) => ({ ...entry }));
  if (edit.keepOnly !== undefined) {
    const keep = new Set<string>(edit.keepOnly);
    entries = entries.filter((entry) => keep.has(entry.digest as string));
  }
  if (edit.instances !== undefined) {
    entries = entries.map((entry) => {
      const replacement = edit.instances!.get(entry.digest as Digest);
      return replacement
        ? { ...entry, digest: replacement.digest, size: replacement.size, mediaType: replacement.mediaType }
        : entry;
    });
  }
  const host = hostPlatform();
  let value: Record<string, unknown>;
  if (target === MediaTypes.OciIndex) {
    const fromOci = list.mediaType === MediaTypes.OciIndex;
    value = {
      schemaVersion: 2,
      mediaType: MediaTypes.OciIndex,
      artifactType: fromOci ? object.artifactType || undefined : undefined,
      manifests: entries.map((entry) =>
        fromOci
          ? ociDescriptorValue(entry)
          : ociDescriptorValue({
              mediaType: entry.mediaType,
              digest: entry.digest,
              size: entry.size,
              urls: entry.urls,
              platform: isJsonObject(entry.platform) ? entry.platform : {},
            }),
      ),
      subject: fromOci && isJsonObject(object.subject) ? ociDescriptorValue(object.subject) : undefined,
      annotations: fromOci ? stringMapValue(object.annotations) : undefined,
    };
  } else {
    value = {
      schemaVersion: 2,
      mediaType: MediaTypes.DockerManifestList,
      manifests: entries.map((entry) => {
        const platform = isJsonObject(entry.platform)
          ? entry.platform
          : list.mediaType === MediaTypes.OciIndex
            ? { os: host.os, architecture: host.architecture }
            : {};
        return {
          ...schema2DescriptorValue(entry),
          platform: {
            ...ociPlatformValue(platform),
            features:
              list.mediaType === MediaTypes.DockerManifestList ? nonEmptyArray(platform.features) : undefined,
          },
        };
      }),
    };
  }
  const bytes = encoder.encode(goJsonMarshal(value));
  return { bytes, mediaType: target, digest: digestOf(bytes) };
}

/** containers/image copy: types tried after the source's own, in order. */
const preferredManifestMediaTypes: readonly string[] = [
  MediaTypes.DockerManifest,
  MediaTypes.DockerSchema1Signed,
];
/** containers/image copy: every single-image type, used when the destination accepts anything. */
const allSingleImageMediaTypes: readonly string[] = [
  MediaTypes.OciManifest,
  MediaTypes.DockerManifest,
  MediaTypes.DockerSchema1Signed,
  MediaTypes.DockerSchema1,
];
const supportedListMediaTypes: readonly string[] = [MediaTypes.DockerManifestList, MediaTypes.OciIndex];

/**
 * The manifest types to try writing, in order, as containers/image copy's
 * `determineManifestConversion`: the source type (normalised) when the destination supports it,
 * then Docker schema2 and schema1 signed when supported, then the destination's types in its order.
 * `supported` undefined or empty means any type; `forced` (`--format`) replaces `supported`. List
 * types in `supported` are left out for single images (they could never be a conversion target).
 *
 * For a list source (OCI index / Docker list), as `determineListConversion`: the source type when
 * supported, then the supported list types; a forced single-image type is mapped to its list type.
 * Throws `ERR_GANTRY_MANIFEST_CONVERSION_FAILED` when no list type is supported.
 */
export function conversionCandidates(
  sourceMediaType: string,
  supported: readonly string[] | undefined,
  forced?: string,
): string[] {
  const ordered: string[] = [];
  const add = (type: string): void => {
    if (!ordered.includes(type)) ordered.push(type);
  };
  if (isManifestListMediaType(sourceMediaType)) {
    let forcedList = forced;
    if (forced === MediaTypes.OciManifest) forcedList = MediaTypes.OciIndex;
    else if (
      forced === MediaTypes.DockerManifest ||
      forced === MediaTypes.DockerSchema1 ||
      forced === MediaTypes.DockerSchema1Signed
    ) {
      forcedList = MediaTypes.DockerManifestList;
    }
    let destination = supported === undefined || supported.length === 0 ? supportedListMediaTypes : supported;
    if (forcedList) destination = [forcedList];
    if (destination.includes(sourceMediaType)) add(sourceMediaType);
    for (const type of destination) if (isManifestListMediaType(type)) add(type);
    if (ordered.length === 0) {
      throw conversionFailed(
        `destination does not support any supported manifest list types (${supportedListMediaTypes.join(' ')})`,
      );
    }
    return ordered;
  }
  const source = normalizeManifestMediaType(sourceMediaType);
  let destination = supported === undefined || supported.length === 0 ? allSingleImageMediaTypes : supported;
  if (forced) destination = [forced];
  if (destination.includes(source)) add(source);
  for (const type of preferredManifestMediaTypes) if (destination.includes(type)) add(type);
  for (const type of destination) if (!isManifestListMediaType(type)) add(type);
  return ordered;
}
