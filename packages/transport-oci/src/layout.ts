/**
 * Reading and writing the files of an OCI image layout
 * (https://github.com/opencontainers/image-spec/blob/main/image-layout.md):
 *
 * ```
 * <layout>/oci-layout            {"imageLayoutVersion":"1.0.0"}
 * <layout>/index.json            an OCI index whose `manifests` are the images of the layout
 * <layout>/blobs/<alg>/<hex>     every manifest, config and layer, named by its digest
 * ```
 *
 * Safety rule: every path inside a layout (or a shared blob directory) is built from a digest validated
 * by `parseDigest` (a known algorithm and lowercase hex), never from other strings read from the layout.
 */
import { open } from 'node:fs/promises';
import path from 'node:path';
import {
  type Digest,
  digestAlgorithm,
  digestHex,
  ErrorCodes,
  GantryError,
  isGantryError,
  MediaTypes,
  parseDigest,
} from '@gantry/core';
import { describeFileSystemError, errorCode, writeFileAtomically } from './file-system.js';

/** The annotation naming an image in `index.json` (`oci:path:name`). */
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
/** Largest manifest accepted, as containers/image's `iolimits.MaxManifestBodySize`. */
export const maximumManifestSize = 4 * 1024 * 1024;

/** Manifest types an `index.json` entry may have for Gantry to read it (as containers/image). */
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

/** Paths of a layout's files. */
export function layoutFilePath(layoutDirectory: string): string {
  return path.join(layoutDirectory, layoutFileName);
}
export function indexFilePath(layoutDirectory: string): string {
  return path.join(layoutDirectory, indexFileName);
}
export function layoutBlobDirectory(layoutDirectory: string): string {
  return path.join(layoutDirectory, blobsDirectoryName);
}

/**
 * The path of a blob in a blob directory (`<layout>/blobs` or a shared blob directory). The digest is
 * validated again here, so no caller can make this escape the directory.
 */
export function blobPath(blobDirectory: string, digest: Digest): string {
  const valid = parseDigest(digest);
  return path.join(blobDirectory, digestAlgorithm(valid), digestHex(valid));
}

function layoutError(message: string, cause?: unknown): GantryError {
  return new GantryError(ErrorCodes.InvalidLayout, message, cause === undefined ? {} : { cause });
}

/**
 * Reads a small file fully, refusing files larger than `limit` bytes. Rejects with the file-system error
 * (ENOENT…) as is, so callers can tell a missing file apart.
 */
export async function readSmallFile(
  filePath: string,
  limit: number,
  description: string,
): Promise<Uint8Array> {
  const handle = await open(filePath, 'r');
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw layoutError(`${description} ${filePath} is not a regular file`);
    if (stats.size > limit) {
      throw layoutError(
        `${description} ${filePath} is too large (${stats.size} bytes, at most ${limit} accepted)`,
      );
    }
    const buffer = Buffer.alloc(limit + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > limit) throw layoutError(`${description} ${filePath} is larger than ${limit} bytes`);
    }
    return new Uint8Array(buffer.subarray(0, length));
  } finally {
    await handle.close();
  }
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
 * Validates one descriptor of an index (`index.json` or an index manifest): a string `mediaType`
 * (possibly empty), a valid `digest`, a non-negative integer `size`.
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

/**
 * Reads `<layout>/index.json`. Resolves `undefined` when the file does not exist; throws
 * `ERR_GANTRY_INVALID_LAYOUT` when it is malformed.
 */
export async function readIndex(layoutDirectory: string): Promise<LayoutIndex | undefined> {
  const filePath = indexFilePath(layoutDirectory);
  let bytes: Uint8Array;
  try {
    bytes = await readSmallFile(filePath, maximumIndexSize, 'OCI layout index');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    if (isGantryError(error)) throw error;
    throw layoutError(`reading ${filePath}: ${describeFileSystemError(error)}`, error);
  }
  return parseIndex(bytes, filePath);
}

/** Serialises an index for writing: the entries' raw members, other top-level members kept as read. */
export function serializeIndex(index: LayoutIndex): string {
  const output: Record<string, unknown> = { schemaVersion: 2 };
  for (const [key, value] of Object.entries(index.raw)) {
    if (key !== 'schemaVersion' && key !== 'manifests') output[key] = value;
  }
  output.manifests = index.entries.map((entry) => entry.raw);
  return JSON.stringify(output);
}

/** Writes `<layout>/index.json` atomically. */
export async function writeIndex(layoutDirectory: string, index: LayoutIndex): Promise<void> {
  await writeFileAtomically(indexFilePath(layoutDirectory), serializeIndex(index));
}

/**
 * Checks `<layout>/oci-layout` when present: it must be JSON with an `imageLayoutVersion` of major
 * version 1. Resolves whether the file exists (containers/image reads layouts without it, so Gantry
 * does too).
 */
export async function checkLayoutVersion(layoutDirectory: string): Promise<boolean> {
  const filePath = layoutFilePath(layoutDirectory);
  let bytes: Uint8Array;
  try {
    bytes = await readSmallFile(filePath, 64 * 1024, 'OCI layout file');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return false;
    if (isGantryError(error)) throw error;
    throw layoutError(`reading ${filePath}: ${describeFileSystemError(error)}`, error);
  }
  const content = parseJsonObject(bytes, filePath);
  const version = content.imageLayoutVersion;
  if (typeof version !== 'string' || !/^1\.\d+\.\d+/.test(version)) {
    throw layoutError(
      `${filePath}: unsupported imageLayoutVersion ${JSON.stringify(version)}, expected ${imageLayoutVersion}`,
    );
  }
  return true;
}

/** Writes `<layout>/oci-layout` unless it exists (checking its version when it does). */
export async function ensureLayoutFile(layoutDirectory: string): Promise<void> {
  if (await checkLayoutVersion(layoutDirectory)) return;
  await writeFileAtomically(layoutFilePath(layoutDirectory), JSON.stringify({ imageLayoutVersion }));
}

/**
 * Guesses a manifest's MIME type from its bytes when nothing else records it: the `mediaType` member,
 * else an index when it has `manifests`, else an OCI manifest when it has `config`; '' when unknown.
 */
export function guessManifestMediaType(bytes: Uint8Array): string {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return '';
  }
  if (typeof value !== 'object' || value === null) return '';
  const manifest = value as Record<string, unknown>;
  if (typeof manifest.mediaType === 'string' && manifest.mediaType !== '') return manifest.mediaType;
  if (manifest.schemaVersion === 1) {
    return manifest.signatures === undefined ? MediaTypes.DockerSchema1 : MediaTypes.DockerSchema1Signed;
  }
  if (Array.isArray(manifest.manifests)) return MediaTypes.OciIndex;
  if (typeof manifest.config === 'object' && manifest.config !== null) return MediaTypes.OciManifest;
  return '';
}

/**
 * Reads a manifest blob by digest from the first of `blobDirectories` that has it. Resolves `undefined`
 * when none has it.
 */
export async function readManifestBlob(
  blobDirectories: readonly string[],
  digest: Digest,
): Promise<Uint8Array | undefined> {
  for (const directory of blobDirectories) {
    const filePath = blobPath(directory, digest);
    try {
      return await readSmallFile(filePath, maximumManifestSize, 'manifest');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') continue;
      if (isGantryError(error)) throw error;
      throw layoutError(`reading manifest ${filePath}: ${describeFileSystemError(error)}`, error);
    }
  }
  return undefined;
}

/** The digests a manifest or index refers to directly: config and layers, or list entries. */
export interface ManifestReferences {
  /** Blobs (configs and layers) the manifest refers to. */
  blobs: Digest[];
  /** Manifests (list entries) the index refers to, with their media types. */
  manifests: Array<{ digest: Digest; mediaType: string }>;
}

/**
 * Lists what a manifest refers to. Understands OCI manifests and indexes and Docker schema 2 manifests
 * and lists; throws `ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE` for anything else, so callers that must not
 * lose data (garbage collection) stop instead of guessing.
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
 * Every digest (manifests included) reachable from `roots`, reading manifests from `blobDirectories`.
 * Throws when a manifest is missing or not understood: callers use this to decide what may be deleted,
 * and must not delete anything when they cannot know.
 */
export async function reachableDigests(
  blobDirectories: readonly string[],
  roots: ReadonlyArray<{ digest: Digest; mediaType: string }>,
): Promise<Set<Digest>> {
  const reachable = new Set<Digest>();
  const pending = [...roots];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (reachable.has(next.digest)) continue;
    reachable.add(next.digest);
    const bytes = await readManifestBlob(blobDirectories, next.digest);
    if (bytes === undefined) {
      throw layoutError(`manifest ${next.digest} referred to by the layout is missing`);
    }
    const references = manifestReferences(bytes, next.mediaType, `manifest ${next.digest}`);
    for (const blob of references.blobs) reachable.add(blob);
    pending.push(...references.manifests);
  }
  return reachable;
}
