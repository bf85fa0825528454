/**
 * The OCI image layout format (https://github.com/opencontainers/image-spec/blob/main/image-layout.md),
 * on bytes, for both a layout directory (`oci:`) and a tarred layout (`oci-archive:`):
 *
 * ```
 * oci-layout            {"imageLayoutVersion":"1.0.0"}
 * index.json            an OCI index whose `manifests` are the images of the layout
 * blobs/<alg>/<hex>     every manifest, config and layer, named by its digest
 * ```
 *
 * Reading and writing the files or tar entries stays in the transports.
 */
import {
  type Digest,
  digestAlgorithm,
  digestHex,
  digestOf,
  ErrorCodes,
  GantryError,
  MediaTypes,
  manifestMatchesDigest,
  parseDigest,
} from '@gantry/core/transport';

/** The annotation naming an image in `index.json` (the `name` of `path:name`). */
export const referenceNameAnnotation = 'org.opencontainers.image.ref.name';
/** The `oci-layout` file name. */
export const layoutFileName = 'oci-layout';
/** The `index.json` file name. */
export const indexFileName = 'index.json';
/** The blob directory name. */
export const blobsDirectoryName = 'blobs';
/** The layout version Gantry writes. */
export const imageLayoutVersion = '1.0.0';
/** Largest `index.json` accepted (a layout with tens of thousands of images stays far below). */
export const maximumIndexSize = 64 * 1024 * 1024;
/** Largest `oci-layout` accepted. */
export const maximumLayoutFileSize = 64 * 1024;
/** Largest manifest accepted, as containers/image's `iolimits.MaxManifestBodySize`. */
export const maximumManifestSize = 4 * 1024 * 1024;

/** Manifest types an `index.json` entry may have to be selected by name (as containers/image). */
export const readableEntryMediaTypes: readonly string[] = [
  MediaTypes.OciManifest,
  MediaTypes.OciIndex,
  MediaTypes.DockerManifest,
  MediaTypes.DockerManifestList,
];

/** An `index.json` entry, validated; `raw` keeps every member as read (unknown ones included). */
export interface IndexEntry {
  mediaType: string;
  digest: Digest;
  size: number;
  referenceName: string | undefined;
  raw: Record<string, unknown>;
}

/** A parsed `index.json`; `raw` keeps unknown top-level members so rewriting preserves them. */
export interface LayoutIndex {
  entries: IndexEntry[];
  raw: Record<string, unknown>;
}

/** Guesses a manifest's MIME type from its bytes ('' when unknown); core's `guessManifestMediaType` by default. */
export type GuessManifestMediaType = (bytes: Uint8Array) => string;

/** An `ERR_GANTRY_INVALID_LAYOUT` error. */
export function layoutError(message: string, cause?: unknown): GantryError {
  return new GantryError(ErrorCodes.InvalidLayout, message, cause === undefined ? {} : { cause });
}

/** The relative path (and tar entry name) of a blob: `blobs/<alg>/<hex>`, built from a validated digest only. */
/**
 * Checks a top-level manifest read for its `index.json` entry: its bytes must have the entry's digest and,
 * when the entry gives one, its size. Throws `ERR_GANTRY_INVALID_LAYOUT` naming the difference, so a
 * layout whose index and blobs disagree is refused instead of copied as something else.
 */
export function checkManifestMatchesEntry(entry: IndexEntry, bytes: Uint8Array, where: string): void {
  if (entry.size !== -1 && bytes.byteLength !== entry.size) {
    throw layoutError(
      `manifest ${entry.digest} in ${where} is ${bytes.byteLength} bytes, but index.json says ${entry.size}: the layout is corrupt`,
    );
  }
  const actual = digestOf(bytes, digestAlgorithm(entry.digest));
  // A signed schema1 manifest may be listed under its payload's digest (containers/image's manifest.Digest).
  if (actual !== entry.digest && !manifestMatchesDigest(bytes, entry.digest)) {
    throw layoutError(`manifest ${entry.digest} in ${where} has digest ${actual}: the layout is corrupt`);
  }
}

export function blobEntryName(digest: Digest): string {
  const valid = parseDigest(digest);
  return `${blobsDirectoryName}/${digestAlgorithm(valid)}/${digestHex(valid)}`;
}

/** Parses bytes that must be a JSON object; throws `ERR_GANTRY_INVALID_LAYOUT` naming `description`. */
export function parseJsonObject(bytes: Uint8Array, description: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (error) {
    throw layoutError(`${description} is not valid JSON: ${(error as Error).message}`, error);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw layoutError(`${description} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/**
 * Validates one descriptor (of `index.json` or a manifest): a string `mediaType` (possibly empty), a
 * valid `digest`, a non-negative integer `size` (-1 when absent), annotations that are an object with a
 * string `org.opencontainers.image.ref.name` if any. Throws `ERR_GANTRY_INVALID_LAYOUT` naming the problem.
 */
export function parseDescriptor(value: unknown, description: string): IndexEntry {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw layoutError(`${description} is not a JSON object`);
  }
  const raw = value as Record<string, unknown>;
  const mediaType = raw.mediaType ?? '';
  if (typeof mediaType !== 'string') throw layoutError(`${description} has a mediaType that is not a string`);
  if (typeof raw.digest !== 'string') throw layoutError(`${description} has no digest`);
  let digest: Digest;
  try {
    digest = parseDigest(raw.digest);
  } catch (error) {
    throw layoutError(`${description} has an invalid digest: ${(error as Error).message}`, error);
  }
  const size = raw.size ?? -1;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < -1) {
    throw layoutError(`${description} has an invalid size ${JSON.stringify(raw.size)}`);
  }
  let referenceName: string | undefined;
  if (raw.annotations !== undefined && raw.annotations !== null) {
    if (typeof raw.annotations !== 'object' || Array.isArray(raw.annotations)) {
      throw layoutError(`${description} has annotations that are not a JSON object`);
    }
    const name = (raw.annotations as Record<string, unknown>)[referenceNameAnnotation];
    if (name !== undefined && typeof name !== 'string') {
      throw layoutError(`${description} has a ${referenceNameAnnotation} annotation that is not a string`);
    }
    referenceName = name;
  }
  return { mediaType, digest, size, referenceName, raw };
}

/** Parses `index.json` bytes; throws `ERR_GANTRY_INVALID_LAYOUT` naming the problem. */
export function parseIndex(bytes: Uint8Array, description: string): LayoutIndex {
  const raw = parseJsonObject(bytes, description);
  if (raw.schemaVersion !== undefined && raw.schemaVersion !== 2) {
    throw layoutError(`${description} has schemaVersion ${JSON.stringify(raw.schemaVersion)}, expected 2`);
  }
  const manifests = raw.manifests ?? [];
  if (!Array.isArray(manifests)) {
    throw layoutError(`${description} has a "manifests" member that is not an array`);
  }
  const entries = manifests.map((entry, position) =>
    parseDescriptor(entry, `${description} manifests[${position}]`),
  );
  return { entries, raw };
}

/** Serialises an index: `schemaVersion` 2, other top-level members as read, then the entries' raw members. */
export function serializeIndex(index: LayoutIndex): string {
  const output: Record<string, unknown> = { schemaVersion: 2 };
  for (const [key, value] of Object.entries(index.raw)) {
    if (key !== 'schemaVersion' && key !== 'manifests') output[key] = value;
  }
  output.manifests = index.entries.map((entry) => entry.raw);
  return JSON.stringify(output);
}

/**
 * Checks `oci-layout` bytes: JSON with an `imageLayoutVersion` of major version 1. Throws
 * `ERR_GANTRY_INVALID_LAYOUT` (`<description>: unsupported imageLayoutVersion …`) otherwise.
 */
export function checkLayoutFile(bytes: Uint8Array, description: string): void {
  const content = parseJsonObject(bytes, description);
  const version = content.imageLayoutVersion;
  if (typeof version !== 'string' || !/^1\.\d+\.\d+/.test(version)) {
    throw layoutError(
      `${description}: unsupported imageLayoutVersion ${JSON.stringify(version)}, expected ${imageLayoutVersion}`,
    );
  }
}

/** The `oci-layout` content Gantry writes (as containers/image: `{"imageLayoutVersion":"1.0.0"}`). */
export function layoutFileContent(): string {
  return JSON.stringify({ imageLayoutVersion });
}
