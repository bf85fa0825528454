/**
 * The OCI image layout rules an archive follows
 * (https://github.com/opencontainers/image-spec/blob/main/image-layout.md), on bytes rather than files:
 *
 * ```
 * oci-layout            {"imageLayoutVersion":"1.0.0"}
 * index.json            an OCI index whose `manifests` are the images of the layout
 * blobs/<alg>/<hex>     every manifest, config and layer, named by its digest
 * ```
 *
 * The same rules live, on files, in `@gantry/transport-oci` (layout.ts, source.ts `findIndexEntry`,
 * destination.ts `addIndexEntry`); transports never import each other, so the byte-level parts here
 * repeat them. They belong in a shared place (e.g. `@gantry/core` `oci-layout`).
 */
import {
  type Digest,
  digestAlgorithm,
  digestHex,
  ErrorCodes,
  GantryError,
  guessManifestMediaType,
  MediaTypes,
  parseDigest,
} from '@gantry/core';

/** The annotation naming an image in `index.json`. */
export const referenceNameAnnotation = 'org.opencontainers.image.ref.name';
/** Entry names in the archive. */
export const layoutFileName = 'oci-layout';
export const indexFileName = 'index.json';
export const blobsDirectoryName = 'blobs';
/** The layout version Gantry writes. */
export const imageLayoutVersion = '1.0.0';
/** Largest `index.json` accepted. */
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

/** The archive entry name of a blob: `blobs/<alg>/<hex>`, built from a validated digest only. */
export function blobEntryName(digest: Digest): string {
  const valid = parseDigest(digest);
  return `${blobsDirectoryName}/${digestAlgorithm(valid)}/${digestHex(valid)}`;
}

/**
 * The digest a `blobs/<alg>/<hex>` entry name designates; undefined for names that are not blobs of a
 * known algorithm with a valid encoding (such entries are ignored, never used).
 */
export function digestOfBlobEntryName(name: string): Digest | undefined {
  const match = /^blobs\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(name);
  if (!match) return undefined;
  try {
    return parseDigest(`${match[1]}:${match[2]}`);
  } catch {
    return undefined;
  }
}

export function layoutError(message: string, cause?: unknown): GantryError {
  return new GantryError(ErrorCodes.InvalidLayout, message, cause === undefined ? {} : { cause });
}

function parseJsonObject(bytes: Uint8Array, description: string): Record<string, unknown> {
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
 * Validates one descriptor: a string `mediaType` (possibly empty), a valid `digest`, a non-negative
 * integer `size` (-1 when absent). Throws `ERR_GANTRY_INVALID_LAYOUT` naming the problem.
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
  if (!Array.isArray(manifests))
    throw layoutError(`${description} has a "manifests" member that is not an array`);
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

/** Checks `oci-layout` bytes: JSON with an `imageLayoutVersion` of major version 1. */
export function checkLayoutFile(bytes: Uint8Array, description: string): void {
  const content = parseJsonObject(bytes, description);
  const version = content.imageLayoutVersion;
  if (typeof version !== 'string' || !/^1\.\d+\.\d+/.test(version)) {
    throw layoutError(
      `${description}: unsupported imageLayoutVersion ${JSON.stringify(version)}, expected ${imageLayoutVersion}`,
    );
  }
}

/** The bytes of the `oci-layout` file Gantry writes (as containers/image: `{"imageLayoutVersion": "1.0.0"}`). */
export function layoutFileContent(): string {
  return JSON.stringify({ imageLayoutVersion });
}

/** What a reference selects in an index: a name, an `@N` position, or (neither) the only entry. */
export interface ImageSelector {
  imageName: string;
  sourceIndex: number;
  /** Names the archive in messages. */
  location: string;
}

/**
 * The `index.json` entry a selector designates, as containers/image's `getManifestDescriptor`:
 * - a name: the entry whose `org.opencontainers.image.ref.name` is that name and whose type is a
 *   manifest or index (OCI or Docker); `ERR_GANTRY_IMAGE_NOT_FOUND` when none has the name,
 *   `ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE` when only entries of other types have it;
 * - `@N`: the N-th entry; `ERR_GANTRY_IMAGE_NOT_FOUND` when there are not that many;
 * - nothing: the only entry; `ERR_GANTRY_IMAGE_NOT_FOUND` when there is none,
 *   `ERR_GANTRY_INVALID_REFERENCE` when there are several (the user must choose one).
 */
export function findIndexEntry(selector: ImageSelector, index: LayoutIndex): IndexEntry {
  const { location } = selector;
  if (selector.sourceIndex !== -1) {
    const entry = index.entries[selector.sourceIndex];
    if (entry === undefined) {
      throw new GantryError(
        ErrorCodes.ImageNotFound,
        `image @${selector.sourceIndex} not found in OCI archive ${location}: index ${selector.sourceIndex} is too large, only ${index.entries.length} entries available`,
      );
    }
    return entry;
  }
  if (selector.imageName !== '') {
    const unsupportedTypes: string[] = [];
    for (const entry of index.entries) {
      if (entry.referenceName !== selector.imageName) continue;
      if (readableEntryMediaTypes.includes(entry.mediaType)) return entry;
      unsupportedTypes.push(entry.mediaType);
    }
    if (unsupportedTypes.length > 0) {
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        `image "${selector.imageName}" in OCI archive ${location} has unsupported manifest MIME types ${JSON.stringify(unsupportedTypes)}`,
      );
    }
    throw new GantryError(
      ErrorCodes.ImageNotFound,
      `image "${selector.imageName}" not found in OCI archive ${location}: no descriptor found for reference "${selector.imageName}"`,
    );
  }
  if (index.entries.length === 0) {
    throw new GantryError(
      ErrorCodes.ImageNotFound,
      `no image found in OCI archive ${location}: index.json is empty`,
    );
  }
  if (index.entries.length > 1) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `more than one image in OCI archive ${location} (${index.entries.length}), choose an image: oci-archive:${location}:<name> or oci-archive:${location}:@<index>`,
    );
  }
  return index.entries[0] as IndexEntry;
}

/**
 * Adds the entry of a newly written image to the index of an archive being rewritten:
 * - a named entry replaces the entry that held the name (which is dropped, not kept unnamed as `oci:`
 *   does: an archive offers no way to delete images, so unnamed leftovers would accumulate);
 * - an unnamed entry replaces an unnamed entry with the same digest;
 * - otherwise the entry is appended.
 */
export function addIndexEntry(index: LayoutIndex, entry: IndexEntry): void {
  const name = entry.referenceName ?? '';
  const position = index.entries.findIndex((existing) =>
    name !== ''
      ? existing.referenceName === name
      : (existing.referenceName ?? '') === '' && existing.digest === entry.digest,
  );
  if (position === -1) {
    index.entries.push(entry);
    return;
  }
  index.entries[position] = entry;
  // A name is unique: drop any further (malformed) entry holding it.
  if (name !== '') {
    index.entries = index.entries.filter((existing, at) => at <= position || existing.referenceName !== name);
  }
}

/** The index entry for a top-level manifest written as `imageName` ('' for none). */
export function newIndexEntry(
  manifest: Uint8Array,
  mediaType: string,
  digest: Digest,
  imageName: string,
): IndexEntry {
  const effectiveType = mediaType !== '' ? mediaType : guessManifestMediaType(manifest);
  const raw: Record<string, unknown> = { mediaType: effectiveType, digest, size: manifest.byteLength };
  if (imageName !== '') raw.annotations = { [referenceNameAnnotation]: imageName };
  return {
    mediaType: effectiveType,
    digest,
    size: manifest.byteLength,
    referenceName: imageName === '' ? undefined : imageName,
    raw,
  };
}

/** The digests a manifest or index refers to directly: config and layers, or list entries. */
export interface ManifestReferences {
  blobs: Digest[];
  manifests: Array<{ digest: Digest; mediaType: string }>;
}

/**
 * Lists what a manifest refers to. Understands OCI manifests and indexes and Docker schema 2 manifests
 * and lists; throws `ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE` for anything else, so callers that must not
 * lose data (rewriting an archive) stop instead of guessing.
 */
export function manifestReferences(
  bytes: Uint8Array,
  mediaType: string,
  description: string,
): ManifestReferences {
  const effectiveType = mediaType === '' ? guessManifestMediaType(bytes) : mediaType;
  const content = parseJsonObject(bytes, description);
  const result: ManifestReferences = { blobs: [], manifests: [] };
  switch (effectiveType) {
    case MediaTypes.OciManifest:
    case MediaTypes.DockerManifest: {
      if (content.config !== undefined) {
        result.blobs.push(parseDescriptor(content.config, `${description} config`).digest);
      }
      const layers = content.layers ?? [];
      if (!Array.isArray(layers)) throw layoutError(`${description} has "layers" that is not an array`);
      layers.forEach((layer, position) => {
        result.blobs.push(parseDescriptor(layer, `${description} layers[${position}]`).digest);
      });
      // A `subject` is another image, possibly not in the archive: not followed.
      return result;
    }
    case MediaTypes.OciIndex:
    case MediaTypes.DockerManifestList: {
      const manifests = content.manifests ?? [];
      if (!Array.isArray(manifests)) throw layoutError(`${description} has "manifests" that is not an array`);
      manifests.forEach((entry, position) => {
        const descriptor = parseDescriptor(entry, `${description} manifests[${position}]`);
        result.manifests.push({ digest: descriptor.digest, mediaType: descriptor.mediaType });
      });
      return result;
    }
    default:
      throw new GantryError(
        ErrorCodes.UnsupportedManifestType,
        `${description} has unsupported manifest type ${JSON.stringify(effectiveType)}`,
      );
  }
}

/**
 * Every digest (manifests included) reachable from `roots`, reading manifests with `readManifest`
 * (undefined when absent). Throws when a manifest is missing or not understood.
 */
export async function reachableDigests(
  readManifest: (digest: Digest) => Promise<Uint8Array | undefined>,
  roots: ReadonlyArray<{ digest: Digest; mediaType: string }>,
): Promise<Set<Digest>> {
  const reachable = new Set<Digest>();
  const pending = [...roots];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (reachable.has(next.digest)) continue;
    reachable.add(next.digest);
    const bytes = await readManifest(next.digest);
    if (bytes === undefined)
      throw layoutError(`manifest ${next.digest} referred to by index.json is missing`);
    const references = manifestReferences(bytes, next.mediaType, `manifest ${next.digest}`);
    for (const blob of references.blobs) reachable.add(blob);
    pending.push(...references.manifests);
  }
  return reachable;
}
