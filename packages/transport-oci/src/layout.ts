/**
 * Reading and writing the files of an OCI image layout directory
 * (https://github.com/opencontainers/image-spec/blob/main/image-layout.md); the format itself
 * (`index.json`, `oci-layout`, descriptors, reachability) is in `@gantry/oci-layout-format`:
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
} from '@gantry/core/transport';
import {
  blobsDirectoryName,
  checkLayoutFile,
  describeFileSystemError,
  errorCode,
  indexFileName,
  type LayoutIndex,
  layoutError,
  layoutFileContent,
  layoutFileName,
  manifestReferences as layoutManifestReferences,
  reachableDigests as layoutReachableDigests,
  type ManifestReferences,
  maximumIndexSize,
  maximumLayoutFileSize,
  maximumManifestSize,
  parseIndex,
  serializeIndex,
} from '@gantry/oci-layout-format';
import { writeFileAtomically } from './file-system.js';

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
    // Room for the size the file has now and one byte more (so a read that fills it tells the file grew),
    // grown up to the limit while it keeps growing: never the limit at once, which for an index is 64 MiB
    // of zeroed memory (and a garbage collection it prompts) to read a few hundred bytes.
    let buffer = Buffer.allocUnsafe(Math.min(stats.size, limit) + 1);
    let length = 0;
    for (;;) {
      if (length === buffer.length) {
        const larger = Buffer.allocUnsafe(Math.min(buffer.length * 2, limit + 1));
        buffer.copy(larger, 0, 0, length);
        buffer = larger;
      }
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

/**
 * Reads `<layout>/index.json`. Resolves `undefined` when the file does not exist, unless `required`:
 * then (and when the layout path is not a directory) throws `ERR_GANTRY_IMAGE_NOT_FOUND` with the
 * system's error as Go words it (`open /x/index.json: no such file or directory`, skopeo's message).
 * Throws `ERR_GANTRY_INVALID_LAYOUT` when it is malformed.
 */
export async function readIndex(
  layoutDirectory: string,
  options: { required?: boolean } = {},
): Promise<LayoutIndex | undefined> {
  const filePath = indexFilePath(layoutDirectory);
  let bytes: Uint8Array;
  try {
    bytes = await readSmallFile(filePath, maximumIndexSize, 'OCI layout index');
  } catch (error) {
    const code = errorCode(error);
    if (options.required && (code === 'ENOENT' || code === 'ENOTDIR')) {
      throw new GantryError(ErrorCodes.ImageNotFound, describeFileSystemError(error), { cause: error });
    }
    if (code === 'ENOENT') return undefined;
    if (isGantryError(error)) throw error;
    throw layoutError(`reading ${filePath}: ${describeFileSystemError(error)}`, error);
  }
  return parseIndex(bytes, filePath);
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
    bytes = await readSmallFile(filePath, maximumLayoutFileSize, 'OCI layout file');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return false;
    if (isGantryError(error)) throw error;
    throw layoutError(`reading ${filePath}: ${describeFileSystemError(error)}`, error);
  }
  checkLayoutFile(bytes, filePath);
  return true;
}

/** Writes `<layout>/oci-layout` unless it exists (checking its version when it does). */
export async function ensureLayoutFile(layoutDirectory: string): Promise<void> {
  if (await checkLayoutVersion(layoutDirectory)) return;
  await writeFileAtomically(layoutFilePath(layoutDirectory), layoutFileContent());
}

/**
 * Guesses a manifest's MIME type from its bytes when nothing else records it, as `oci:` always has:
 * the `mediaType` member, else an index when it has `manifests`, else an OCI manifest when it has
 * `config`; '' when unknown. (Stricter than core's `guessManifestMediaType`, which `oci-archive:` uses:
 * garbage collection stops on what this cannot name instead of assuming an OCI manifest.)
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

/** `manifestReferences` of `@gantry/oci-layout-format`, guessing missing types as `oci:` does. */
export function manifestReferences(
  bytes: Uint8Array,
  mediaType: string,
  description: string,
): ManifestReferences {
  return layoutManifestReferences(bytes, mediaType, description, guessManifestMediaType);
}

/**
 * Every digest (manifests included) reachable from `roots`, reading manifests from `blobDirectories`.
 * Throws when a manifest is missing or not understood: callers use this to decide what may be deleted,
 * and must not delete anything when they cannot know.
 */
export function reachableDigests(
  blobDirectories: readonly string[],
  roots: ReadonlyArray<{ digest: Digest; mediaType: string }>,
): Promise<Set<Digest>> {
  return layoutReachableDigests(
    (digest) => readManifestBlob(blobDirectories, digest),
    roots,
    guessManifestMediaType,
  );
}
