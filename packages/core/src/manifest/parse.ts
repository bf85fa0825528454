import { type Digest, parseDigest } from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import type { BlobInfo } from '../transport/contract.js';
import { guessManifestMediaType, manifestDigest, parseJsonBytes } from './digests.js';
import { isManifestListMediaType, MediaTypes } from './media-types.js';

/** How a layer blob is compressed, as far as its media type tells. */
export type LayerCompression = 'gzip' | 'zstd' | 'none' | 'unknown';

/** A layer of an image manifest. */
export interface LayerInfo extends BlobInfo {
  compression: LayerCompression;
  /** Schema1 only: a "throwaway" history entry whose blob is an empty layer. Always false otherwise. */
  emptyLayer: boolean;
}

/** A parsed single-image manifest (OCI, Docker schema2 or Docker schema1). */
export interface ImageManifest {
  readonly mediaType: string;
  readonly bytes: Uint8Array;
  readonly digest: Digest;
  /** undefined for schema1. */
  readonly config: BlobInfo | undefined;
  /** Base layer first; schema1: throwaway layers included, flagged `emptyLayer`. */
  readonly layers: readonly LayerInfo[];
  readonly annotations?: Record<string, string>;
  readonly subject?: BlobInfo;
  /** OCI only: the manifest's `artifactType`, when set. */
  readonly artifactType?: string;
}

/** The platform an image is built for, as an OCI index or Docker manifest list describes it. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  osVersion?: string;
  osFeatures?: string[];
}

/** One manifest a manifest list (OCI index) names, with its platform when given. */
export interface ManifestListInstance {
  digest: Digest;
  size: number;
  mediaType: string;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

/** A parsed manifest list or OCI index, with its bytes and digest. */
export interface ManifestList {
  readonly mediaType: string;
  readonly bytes: Uint8Array;
  readonly digest: Digest;
  readonly instances: readonly ManifestListInstance[];
  readonly annotations?: Record<string, string>;
}

/** Compression implied by a layer media type: 'unknown' for types Gantry does not recognise. */
export function layerCompressionOf(mediaType: string | undefined): LayerCompression {
  switch (mediaType) {
    case MediaTypes.OciLayer:
    case MediaTypes.OciLayerNondistributable:
    case MediaTypes.DockerLayer:
    case MediaTypes.DockerLayerForeign:
      return 'none';
    case MediaTypes.OciLayerGzip:
    case MediaTypes.OciLayerNondistributableGzip:
    case MediaTypes.DockerLayerGzip:
    case MediaTypes.DockerLayerForeignGzip:
      return 'gzip';
    case MediaTypes.OciLayerZstd:
    case MediaTypes.OciLayerNondistributableZstd:
    case MediaTypes.DockerLayerZstd:
      return 'zstd';
    default:
      return 'unknown';
  }
}

/** Media types containers/image accepts inside a Docker schema2 manifest (`SupportedSchema2MediaType`). */
const supportedSchema2MediaTypes: readonly string[] = [
  MediaTypes.DockerManifestList,
  MediaTypes.DockerSchema1,
  MediaTypes.DockerSchema1Signed,
  MediaTypes.DockerConfig,
  MediaTypes.DockerLayerForeign,
  MediaTypes.DockerLayerForeignGzip,
  MediaTypes.DockerLayerGzip,
  MediaTypes.DockerManifest,
  MediaTypes.DockerLayer,
];

export type JsonObject = Record<string, unknown>;

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(what: string, problem: string): GantryError {
  return new GantryError(ErrorCodes.InvalidManifest, `invalid ${what}: ${problem}`);
}

/**
 * The deepest nesting of JSON arrays and objects accepted in manifests and configs: Go's encoding/json
 * limit (`maxNestingDepth`), so what containers/image refuses is refused here too, and no recursive
 * reader of a decoded document can be driven into a stack overflow.
 */
export const maximumJsonNestingDepth = 10_000;

/** Whether JSON text nests arrays and objects deeper than `limit` (strings are skipped). */
export function jsonNestingExceeds(bytes: Uint8Array, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let index = 0; index < bytes.length; index++) {
    const byte = bytes[index];
    if (inString) {
      if (byte === 0x5c)
        index++; // backslash: skip the escaped character
      else if (byte === 0x22) inString = false;
    } else if (byte === 0x22) {
      inString = true;
    } else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > limit) return true;
    } else if (byte === 0x5d || byte === 0x7d) {
      depth--;
    }
  }
  return false;
}

/** Parses bytes as a JSON object or throws naming `what`. */
export function decodeJsonObject(bytes: Uint8Array, what: string): JsonObject {
  if (jsonNestingExceeds(bytes, maximumJsonNestingDepth)) {
    throw invalid(what, `JSON nested deeper than ${maximumJsonNestingDepth} levels`);
  }
  const value = parseJsonBytes(bytes);
  if (value === undefined) throw invalid(what, 'not valid JSON');
  if (!isJsonObject(value)) throw invalid(what, 'not a JSON object');
  return value;
}

function optionalString(object: JsonObject, field: string, what: string): string | undefined {
  const value = object[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalid(what, `field "${field}" is not a string`);
  return value;
}

function optionalStringArray(object: JsonObject, field: string, what: string): string[] | undefined {
  const value = object[field];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) {
    throw invalid(what, `field "${field}" is not an array of strings`);
  }
  return value as string[];
}

function optionalStringMap(
  object: JsonObject,
  field: string,
  what: string,
): Record<string, string> | undefined {
  const value = object[field];
  if (value === undefined || value === null) return undefined;
  if (!isJsonObject(value) || Object.values(value).some((item) => typeof item !== 'string')) {
    throw invalid(what, `field "${field}" is not a map of strings`);
  }
  return { ...(value as Record<string, string>) };
}

function checkDigest(value: unknown, what: string): Digest {
  if (typeof value !== 'string' || value === '') throw invalid(what, 'missing digest');
  try {
    return parseDigest(value);
  } catch (error) {
    throw invalid(what, `invalid digest "${value}": ${(error as Error).message}`);
  }
}

function checkSize(value: unknown, what: string): number {
  if (value === undefined || value === null) return 0; // Go's zero value
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw invalid(what, `invalid size ${JSON.stringify(value)}`);
  return value;
}

/** A validated content descriptor (OCI descriptor or Docker schema2 descriptor). */
export function parseDescriptor(value: unknown, what: string, requireMediaType = true): BlobInfo {
  if (!isJsonObject(value)) throw invalid(what, 'not a JSON object');
  const mediaType = optionalString(value, 'mediaType', what);
  if (requireMediaType && (mediaType === undefined || mediaType === ''))
    throw invalid(what, 'missing mediaType');
  const info: BlobInfo = { digest: checkDigest(value.digest, what), size: checkSize(value.size, what) };
  if (mediaType !== undefined) info.mediaType = mediaType;
  const urls = optionalStringArray(value, 'urls', what);
  if (urls !== undefined) info.urls = urls;
  const annotations = optionalStringMap(value, 'annotations', what);
  if (annotations !== undefined) info.annotations = annotations;
  return info;
}

/**
 * Rejects manifests carrying fields of another manifest kind, as containers/image
 * `ValidateUnambiguousManifestFormat` does, so that a manifest cannot be read differently by
 * software that trusts its `mediaType` and software that guesses.
 */
function validateUnambiguous(
  object: JsonObject,
  expectedMediaType: string,
  allowed: readonly string[],
): void {
  const unexpected = ['config', 'fsLayers', 'history', 'layers', 'manifests'].filter(
    (field) => object[field] !== undefined && object[field] !== null && !allowed.includes(field),
  );
  if (unexpected.length > 0) {
    throw new GantryError(
      ErrorCodes.InvalidManifest,
      `rejecting ambiguous manifest, unexpected fields ${JSON.stringify(unexpected)} in supposedly ${expectedMediaType}`,
    );
  }
}

function checkSchemaVersion(object: JsonObject, expected: number, what: string): void {
  if (object.schemaVersion !== expected) {
    throw invalid(
      what,
      `unsupported schema version ${JSON.stringify(object.schemaVersion ?? null)}, expected ${expected}`,
    );
  }
}

function checkMediaTypeField(object: JsonObject, expected: string, what: string, required: boolean): void {
  const value = optionalString(object, 'mediaType', what);
  if (value === undefined || value === '') {
    if (required) throw invalid(what, `missing mediaType, expected "${expected}"`);
    return;
  }
  if (value !== expected)
    throw invalid(what, `mediaType "${value}" does not match the manifest type "${expected}"`);
}

/** Resolves the media type to parse as: a known given type, else the guessed one. */
function effectiveMediaType(bytes: Uint8Array, mediaType: string | undefined): string {
  if (
    mediaType !== undefined &&
    mediaType !== '' &&
    [...Object.values(MediaTypes)].includes(mediaType as never)
  ) {
    return mediaType;
  }
  const guessed = guessManifestMediaType(bytes);
  if (guessed === '') {
    throw new GantryError(
      ErrorCodes.InvalidManifest,
      `invalid manifest: cannot determine the manifest type${mediaType ? ` (stored as "${mediaType}")` : ''}`,
    );
  }
  return guessed;
}

function parseLayers(object: JsonObject, what: string): LayerInfo[] {
  const layers = object.layers;
  if (!Array.isArray(layers)) throw invalid(what, 'missing layers');
  return layers.map((layer, index) => {
    const info = parseDescriptor(layer, `${what}, layer ${index}`);
    return { ...info, compression: layerCompressionOf(info.mediaType), emptyLayer: false };
  });
}

function parseOciManifest(bytes: Uint8Array): ImageManifest {
  const what = 'OCI image manifest';
  const object = decodeJsonObject(bytes, what);
  checkSchemaVersion(object, 2, what);
  validateUnambiguous(object, MediaTypes.OciManifest, ['config', 'layers']);
  checkMediaTypeField(object, MediaTypes.OciManifest, what, false);
  if (object.config === undefined || object.config === null) throw invalid(what, 'missing config');
  const config = parseDescriptor(object.config, `${what}, config`);
  const layers = parseLayers(object, what);
  const annotations = optionalStringMap(object, 'annotations', what);
  const artifactType = optionalString(object, 'artifactType', what);
  const subject =
    object.subject === undefined || object.subject === null
      ? undefined
      : parseDescriptor(object.subject, `${what}, subject`);
  return {
    mediaType: MediaTypes.OciManifest,
    bytes,
    digest: manifestDigest(bytes),
    config,
    layers,
    ...(annotations ? { annotations } : {}),
    ...(subject ? { subject } : {}),
    ...(artifactType ? { artifactType } : {}),
  };
}

function parseDockerSchema2Manifest(bytes: Uint8Array): ImageManifest {
  const what = 'Docker schema2 manifest';
  const object = decodeJsonObject(bytes, what);
  checkSchemaVersion(object, 2, what);
  validateUnambiguous(object, MediaTypes.DockerManifest, ['config', 'layers']);
  checkMediaTypeField(object, MediaTypes.DockerManifest, what, true);
  if (object.config === undefined || object.config === null) throw invalid(what, 'missing config');
  const config = parseDescriptor(object.config, `${what}, config`);
  const layers = parseLayers(object, what);
  for (const [index, layer] of layers.entries()) {
    if (!supportedSchema2MediaTypes.includes(layer.mediaType ?? '')) {
      throw invalid(what, `layer ${index} has unsupported docker v2s2 media type "${layer.mediaType}"`);
    }
  }
  return { mediaType: MediaTypes.DockerManifest, bytes, digest: manifestDigest(bytes), config, layers };
}

/** One schema1 history entry's v1Compatibility fields that matter for layers and conversion. */
export interface Schema1Compatibility {
  id: string;
  parent: string;
  comment: string;
  created: string | undefined;
  author: string;
  throwAway: boolean;
  containerConfigCmd: string[];
}

/** A decoded schema1 manifest after containers/image's `fixManifestLayers` (repeated IDs removed). */
export interface DecodedSchema1 {
  object: JsonObject;
  name: string;
  tag: string;
  architecture: string;
  /** In manifest order (top layer first). */
  blobSums: Digest[];
  /** In manifest order; each entry's raw v1Compatibility string. */
  v1Compatibility: string[];
  compatibility: Schema1Compatibility[];
}

/** Decodes and validates a schema1 manifest (signed or not). */
export function decodeSchema1(bytes: Uint8Array): DecodedSchema1 {
  const what = 'Docker schema1 manifest';
  const object = decodeJsonObject(bytes, what);
  checkSchemaVersion(object, 1, what);
  validateUnambiguous(object, MediaTypes.DockerSchema1Signed, ['fsLayers', 'history']);
  const fsLayers = object.fsLayers;
  const history = object.history;
  if (!Array.isArray(fsLayers) || fsLayers.length === 0) throw invalid(what, 'no FSLayers in manifest');
  if (!Array.isArray(history) || history.length !== fsLayers.length) {
    throw invalid(what, 'length of history not equal to number of layers');
  }
  const blobSums = fsLayers.map((layer, index) => {
    if (!isJsonObject(layer)) throw invalid(what, `fsLayers entry ${index} is not a JSON object`);
    return checkDigest(layer.blobSum, `${what}, fsLayers entry ${index}`);
  });
  const v1Compatibility = history.map((entry, index) => {
    if (!isJsonObject(entry) || typeof entry.v1Compatibility !== 'string') {
      throw invalid(what, `history entry ${index} has no v1Compatibility string`);
    }
    return entry.v1Compatibility;
  });
  const compatibility = v1Compatibility.map((text, index): Schema1Compatibility => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw invalid(what, `parsing v2s1 history entry ${index}: not valid JSON`);
    }
    if (!isJsonObject(parsed)) throw invalid(what, `parsing v2s1 history entry ${index}: not a JSON object`);
    const entryWhat = `${what}, history entry ${index}`;
    const containerConfig = parsed.container_config;
    const cmd = isJsonObject(containerConfig)
      ? optionalStringArray(containerConfig, 'Cmd', entryWhat)
      : undefined;
    if (
      parsed.throwaway !== undefined &&
      parsed.throwaway !== null &&
      typeof parsed.throwaway !== 'boolean'
    ) {
      throw invalid(entryWhat, 'field "throwaway" is not a boolean');
    }
    return {
      id: optionalString(parsed, 'id', entryWhat) ?? '',
      parent: optionalString(parsed, 'parent', entryWhat) ?? '',
      comment: optionalString(parsed, 'comment', entryWhat) ?? '',
      created: optionalString(parsed, 'created', entryWhat),
      author: optionalString(parsed, 'author', entryWhat) ?? '',
      throwAway: parsed.throwaway === true,
      containerConfigCmd: cmd ?? [],
    };
  });
  for (const entry of compatibility) {
    if (!/^[a-f0-9]{64}$/.test(entry.id)) throw invalid(what, `image ID "${entry.id}" is invalid`);
  }
  if (compatibility[compatibility.length - 1]!.parent !== '') {
    throw invalid(what, 'Invalid parent ID in the base layer of the image');
  }
  const seen = new Set<string>();
  let lastId = '';
  for (const entry of compatibility) {
    if (entry.id !== lastId && seen.has(entry.id))
      throw invalid(what, `ID ${entry.id} appears multiple times in manifest`);
    lastId = entry.id;
    seen.add(lastId);
  }
  for (let index = compatibility.length - 2; index >= 0; index--) {
    if (compatibility[index]!.id === compatibility[index + 1]!.id) {
      blobSums.splice(index, 1);
      v1Compatibility.splice(index, 1);
      compatibility.splice(index, 1);
    } else if (compatibility[index]!.parent !== compatibility[index + 1]!.id) {
      throw invalid(
        what,
        `Invalid parent ID. Expected ${compatibility[index + 1]!.id}, got "${compatibility[index]!.parent}"`,
      );
    }
  }
  return {
    object,
    name: optionalString(object, 'name', what) ?? '',
    tag: optionalString(object, 'tag', what) ?? '',
    architecture: optionalString(object, 'architecture', what) ?? '',
    blobSums,
    v1Compatibility,
    compatibility,
  };
}

function parseSchema1Manifest(bytes: Uint8Array, mediaType: string): ImageManifest {
  const decoded = decodeSchema1(bytes);
  const layers: LayerInfo[] = [];
  for (let index = decoded.blobSums.length - 1; index >= 0; index--) {
    layers.push({
      digest: decoded.blobSums[index]!,
      size: -1,
      compression: 'unknown',
      emptyLayer: decoded.compatibility[index]!.throwAway,
    });
  }
  return { mediaType, bytes, digest: manifestDigest(bytes), config: undefined, layers };
}

/**
 * Parses and validates a single-image manifest. `mediaType` is the type the storage recorded; when
 * it is missing or not a known type, the type is guessed from the bytes. Signed and unsigned
 * schema1 are told apart by the presence of `signatures`.
 *
 * Throws `ERR_GANTRY_INVALID_MANIFEST` naming the problem (not JSON, wrong schemaVersion, a
 * `mediaType` field disagreeing with the type, fields of another manifest kind, missing config,
 * invalid digests or sizes, inconsistent schema1 history), and `ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE`
 * for lists and unknown types.
 */
export function parseManifest(bytes: Uint8Array, mediaType?: string): ImageManifest {
  const type = effectiveMediaType(bytes, mediaType);
  switch (type) {
    case MediaTypes.OciManifest:
      return parseOciManifest(bytes);
    case MediaTypes.DockerManifest:
      return parseDockerSchema2Manifest(bytes);
    case MediaTypes.DockerSchema1:
    case MediaTypes.DockerSchema1Signed: {
      const guessed = guessManifestMediaType(bytes);
      return parseSchema1Manifest(
        bytes,
        guessed === MediaTypes.DockerSchema1Signed ? guessed : MediaTypes.DockerSchema1,
      );
    }
    default:
      if (isManifestListMediaType(type)) {
        throw new GantryError(
          ErrorCodes.UnsupportedManifestType,
          `manifest of type "${type}" is a list of images, not a single image`,
        );
      }
      throw new GantryError(ErrorCodes.UnsupportedManifestType, `unsupported manifest type "${type}"`);
  }
}

function parsePlatform(value: unknown, what: string): Platform | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isJsonObject(value)) throw invalid(what, 'platform is not a JSON object');
  const platform: Platform = {
    architecture: optionalString(value, 'architecture', what) ?? '',
    os: optionalString(value, 'os', what) ?? '',
  };
  const variant = optionalString(value, 'variant', what);
  if (variant) platform.variant = variant;
  const osVersion = optionalString(value, 'os.version', what);
  if (osVersion) platform.osVersion = osVersion;
  const osFeatures = optionalStringArray(value, 'os.features', what);
  if (osFeatures && osFeatures.length > 0) platform.osFeatures = osFeatures;
  return platform;
}

/**
 * Parses and validates a manifest list (OCI index or Docker manifest list); the type is guessed
 * when `mediaType` is missing or unknown. Throws `ERR_GANTRY_INVALID_MANIFEST` naming the problem,
 * `ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE` for single-image manifests.
 */
export function parseManifestList(bytes: Uint8Array, mediaType?: string): ManifestList {
  const type = effectiveMediaType(bytes, mediaType);
  if (!isManifestListMediaType(type)) {
    throw new GantryError(
      ErrorCodes.UnsupportedManifestType,
      `manifest of type "${type}" is not a list of images`,
    );
  }
  const oci = type === MediaTypes.OciIndex;
  const what = oci ? 'OCI image index' : 'Docker manifest list';
  const object = decodeJsonObject(bytes, what);
  checkSchemaVersion(object, 2, what);
  validateUnambiguous(object, type, ['manifests']);
  checkMediaTypeField(object, type, what, !oci);
  if (!Array.isArray(object.manifests)) throw invalid(what, 'missing manifests');
  const instances = object.manifests.map((entry, index): ManifestListInstance => {
    const entryWhat = `${what}, manifest ${index}`;
    const descriptor = parseDescriptor(entry, entryWhat);
    const instance: ManifestListInstance = {
      digest: descriptor.digest,
      size: descriptor.size,
      mediaType: descriptor.mediaType ?? '',
    };
    const platform = parsePlatform((entry as JsonObject).platform, entryWhat);
    if (platform) instance.platform = platform;
    if (descriptor.annotations) instance.annotations = descriptor.annotations;
    if (descriptor.urls) instance.urls = descriptor.urls;
    return instance;
  });
  const annotations = optionalStringMap(object, 'annotations', what);
  return {
    mediaType: type,
    bytes,
    digest: manifestDigest(bytes),
    instances,
    ...(annotations ? { annotations } : {}),
  };
}
