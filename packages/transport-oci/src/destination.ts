/**
 * Writing an image into an OCI layout.
 *
 * - Blobs (and manifests) go to `<layout>/blobs/<alg>/<hex>` (or `<shared>/<alg>/<hex>` with
 *   `ociSharedBlobDirectory`): written to a temporary file in the blob directory while their digest and
 *   size are computed, checked against what was announced, then renamed into place. A failed or
 *   aborted write leaves no file behind.
 * - Nothing is visible in `index.json` until `commit`, which re-reads `index.json` under the layout lock
 *   (see lock.ts), adds the image, and writes it back atomically: concurrent writers to one layout, in
 *   one process or several, all end up in the index.
 * - The new entry carries the reference's name; an older entry with that name loses the name (and stays
 *   reachable as `@N`), and an unnamed entry with the same digest is replaced, as containers/image.
 * - `close` without `commit` deletes the blobs this destination created, except blobs `index.json`
 *   reaches and blobs other open destinations of this process use. Blobs in a shared blob directory are
 *   never deleted (other layouts may use them without Gantry being able to know).
 */
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, open, rename, rm, rmdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  abortError,
  type BlobInfo,
  type BlobToWrite,
  blobWriteStage,
  canonicalDigestAlgorithm,
  type Digest,
  digestAlgorithm,
  digestOf,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageDestinationProperties,
  isGantryError,
  MediaTypes,
  type OperationOptions,
  type PutBlobOptions,
  parseDigest,
  type ReusedBlob,
  type TransportContext,
  type TryReusingBlobOptions,
  throwIfAborted,
} from '@gantry/core';
import { BlobUsage, blobDirectoryKey } from './blob-usage.js';
import { describeFileSystemError, errorCode, randomSuffix } from './file-system.js';
import {
  blobPath,
  checkLayoutVersion,
  ensureLayoutFile,
  guessManifestMediaType,
  type IndexEntry,
  type LayoutIndex,
  layoutBlobDirectory,
  reachableDigests,
  readIndex,
  referenceNameAnnotation,
  writeIndex,
} from './layout.js';
import { type LayoutLockOptions, withLayoutLock } from './lock.js';
import type { OciReference } from './reference.js';

function fileSystemFailure(action: string, error: unknown): GantryError {
  if (isGantryError(error)) return error;
  return new GantryError(ErrorCodes.Internal, `${action}: ${describeFileSystemError(error)}`, {
    cause: error,
  });
}

async function pathExists(filePath: string): Promise<boolean> {
  try {
    await lstat(filePath);
    return true;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return false;
    throw error;
  }
}

/**
 * Adds the entry for a newly written image to an index, as containers/image's `addManifest`: a named
 * entry takes the name away from the first older entry holding it; an older unnamed entry with the same
 * digest is replaced; otherwise the entry is appended.
 */
export function addIndexEntry(index: LayoutIndex, entry: IndexEntry): void {
  if (entry.referenceName !== undefined && entry.referenceName !== '') {
    const holder = index.entries.find((existing) => existing.referenceName === entry.referenceName);
    if (holder) {
      const annotations = { ...(holder.raw.annotations as Record<string, unknown>) };
      delete annotations[referenceNameAnnotation];
      const raw = { ...holder.raw };
      if (Object.keys(annotations).length === 0) delete raw.annotations;
      else raw.annotations = annotations;
      holder.raw = raw;
      holder.referenceName = undefined;
    }
  }
  const position = index.entries.findIndex(
    (existing) => existing.digest === entry.digest && (existing.referenceName ?? '') === '',
  );
  if (position !== -1) index.entries[position] = entry;
  else index.entries.push(entry);
}

class OciImageDestination implements ImageDestination {
  readonly reference: OciReference;
  readonly properties: ImageDestinationProperties;
  readonly #blobDirectory: string;
  readonly #usesSharedBlobDirectory: boolean;
  readonly #createdLayoutDirectory: boolean;
  readonly #usage: BlobUsage;
  readonly #lockOptions: LayoutLockOptions;
  /** Blobs (manifests included) whose files this destination created. */
  readonly #createdBlobs = new Set<Digest>();
  /** Every blob (manifests included) of the image being written. */
  readonly #imageBlobs = new Set<Digest>();
  #topLevel: IndexEntry | undefined;
  #committed = false;
  #closed = false;

  constructor(init: {
    reference: OciReference;
    context: TransportContext;
    blobDirectory: string;
    createdLayoutDirectory: boolean;
    usage: BlobUsage;
    lockOptions: LayoutLockOptions;
  }) {
    this.reference = init.reference;
    this.#blobDirectory = init.blobDirectory;
    this.#usesSharedBlobDirectory = Boolean(init.context.ociSharedBlobDirectory);
    this.#createdLayoutDirectory = init.createdLayoutDirectory;
    this.#usage = init.usage;
    this.#lockOptions = init.lockOptions;
    this.properties = {
      supportedManifestMimeTypes: [MediaTypes.OciManifest, MediaTypes.OciIndex],
      desiredLayerCompression: init.context.ociAcceptUncompressedLayers ? 'preserve' : 'compress',
      acceptsForeignLayerURLs: true,
      mustMatchRuntimeOS: false,
      supportsSignatures: false,
      hasThreadSafePutBlob: true,
      ignoresEmbeddedDockerReference: false,
    };
  }

  #assertWritable(): void {
    if (this.#closed) throw new GantryError(ErrorCodes.Internal, 'oci: image destination used after close()');
    if (this.#committed)
      throw new GantryError(ErrorCodes.Internal, 'oci: image destination used after commit()');
  }

  /** Moves a complete, verified temporary file into place as blob `digest`. */
  async #install(temporaryPath: string, digest: Digest): Promise<void> {
    const finalPath = blobPath(this.#blobDirectory, digest);
    await mkdir(path.dirname(finalPath), { recursive: true });
    const existed = await pathExists(finalPath);
    await rename(temporaryPath, finalPath);
    if (!existed) this.#createdBlobs.add(digest);
    this.#imageBlobs.add(digest);
  }

  #temporaryPath(): string {
    return path.join(this.#blobDirectory, `.gantry-upload-${randomSuffix()}`);
  }

  async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
    this.#assertWritable();
    const signal = options.signal;
    throwIfAborted(signal);
    const expectedDigest = info.digest === undefined ? undefined : parseDigest(info.digest);
    if (expectedDigest) this.#usage.add(expectedDigest);
    await mkdir(this.#blobDirectory, { recursive: true });
    const temporaryPath = this.#temporaryPath();
    let written: { digest: Digest; size: number } | undefined;
    try {
      await pipeline(
        stream,
        blobWriteStage(expectedDigest, (result) => {
          written = result;
        }),
        createWriteStream(temporaryPath, { flags: 'wx', mode: 0o644, flush: true }),
        signal ? { signal } : {},
      );
      if (!written) throw new GantryError(ErrorCodes.Internal, 'blob stream ended without a digest');
      const description = `blob ${expectedDigest ?? written.digest}`;
      if (info.size >= 0 && written.size !== info.size) {
        throw new GantryError(
          ErrorCodes.SizeMismatch,
          `${description}: size mismatch: expected ${info.size} bytes, got ${written.size}`,
        );
      }
      this.#usage.add(written.digest);
      await this.#install(temporaryPath, written.digest);
    } catch (error) {
      await rm(temporaryPath, { force: true });
      if (signal?.aborted) throw abortError(signal);
      throw fileSystemFailure(`writing blob into ${this.#blobDirectory}`, error);
    }
    const result: BlobInfo = { digest: written.digest, size: written.size };
    if (info.mediaType !== undefined) result.mediaType = info.mediaType;
    return result;
  }

  async tryReusingBlob(info: BlobInfo, options: TryReusingBlobOptions): Promise<ReusedBlob> {
    this.#assertWritable();
    throwIfAborted(options.signal);
    const digest = parseDigest(info.digest);
    this.#usage.add(digest);
    let size: number;
    try {
      const stats = await stat(blobPath(this.#blobDirectory, digest));
      if (!stats.isFile()) return { reused: false };
      size = stats.size;
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return { reused: false };
      throw fileSystemFailure(`checking for blob ${digest}`, error);
    }
    if (info.size >= 0 && size !== info.size) return { reused: false };
    this.#imageBlobs.add(digest);
    const blob: BlobInfo = { digest, size };
    if (info.mediaType !== undefined) blob.mediaType = info.mediaType;
    return { reused: true, blob };
  }

  async putManifest(
    manifest: Uint8Array,
    mediaType: string,
    instanceDigest?: Digest,
    options?: OperationOptions,
  ): Promise<void> {
    this.#assertWritable();
    throwIfAborted(options?.signal);
    let digest: Digest;
    if (instanceDigest === undefined) {
      digest = digestOf(manifest);
    } else {
      digest = parseDigest(instanceDigest);
      const actual = digestOf(manifest, digestAlgorithm(digest));
      if (actual !== digest) {
        throw new GantryError(
          ErrorCodes.DigestMismatch,
          `manifest instance ${digest}: digest mismatch: the bytes given have digest ${actual}`,
        );
      }
    }
    this.#usage.add(digest);
    await mkdir(this.#blobDirectory, { recursive: true });
    const temporaryPath = this.#temporaryPath();
    try {
      const handle = await open(temporaryPath, 'wx', 0o644);
      try {
        await handle.writeFile(manifest);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await this.#install(temporaryPath, digest);
    } catch (error) {
      await rm(temporaryPath, { force: true });
      throw fileSystemFailure(`writing manifest ${digest}`, error);
    }
    if (instanceDigest !== undefined) return;
    const effectiveType = mediaType !== '' ? mediaType : guessManifestMediaType(manifest);
    const raw: Record<string, unknown> = { mediaType: effectiveType, digest, size: manifest.byteLength };
    if (this.reference.imageName !== '')
      raw.annotations = { [referenceNameAnnotation]: this.reference.imageName };
    this.#topLevel = {
      mediaType: effectiveType,
      digest,
      size: manifest.byteLength,
      referenceName: this.reference.imageName === '' ? undefined : this.reference.imageName,
      raw,
    };
  }

  async putSignatures(
    signatures: Uint8Array[],
    _instanceDigest?: Digest,
    options?: OperationOptions,
  ): Promise<void> {
    this.#assertWritable();
    throwIfAborted(options?.signal);
    if (signatures.length > 0) {
      throw new GantryError(ErrorCodes.NotSupported, 'Pushing signatures for OCI images is not supported');
    }
  }

  async commit(options?: OperationOptions): Promise<void> {
    this.#assertWritable();
    const topLevel = this.#topLevel;
    if (!topLevel) {
      throw new GantryError(
        ErrorCodes.Internal,
        'oci: commit() called before the top-level manifest was written',
      );
    }
    const layoutDirectory = this.reference.path || '.';
    await mkdir(layoutDirectory, { recursive: true });
    await withLayoutLock(layoutDirectory, { ...this.#lockOptions, signal: options?.signal }, async () => {
      const index: LayoutIndex = (await readIndex(layoutDirectory)) ?? {
        entries: [],
        raw: { schemaVersion: 2 },
      };
      for (const digest of this.#imageBlobs) {
        if (!(await pathExists(blobPath(this.#blobDirectory, digest)))) {
          throw new GantryError(
            ErrorCodes.BlobNotFound,
            `cannot commit image ${this.reference.describeImage()} to OCI layout ${layoutDirectory}: blob ${digest} disappeared from ${this.#blobDirectory} while the image was written (deleted by a concurrent operation?)`,
          );
        }
      }
      addIndexEntry(index, topLevel);
      await ensureLayoutFile(layoutDirectory);
      await writeIndex(layoutDirectory, index);
    });
    this.#committed = true;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      if (!this.#committed) await this.#discard();
    } finally {
      this.#usage.release();
    }
  }

  /** Deletes what an uncommitted write created; best effort, never deleting what anything else uses. */
  async #discard(): Promise<void> {
    const layoutDirectory = this.reference.path || '.';
    if (this.#usesSharedBlobDirectory || this.#createdBlobs.size === 0) {
      await this.#removeCreatedDirectories(layoutDirectory);
      return;
    }
    try {
      await withLayoutLock(layoutDirectory, this.#lockOptions, async () => {
        const index = await readIndex(layoutDirectory);
        const referenced = index
          ? await reachableDigests([this.#blobDirectory], index.entries)
          : new Set<Digest>();
        for (const digest of this.#createdBlobs) {
          if (referenced.has(digest) || this.#usage.usedByOthers(digest)) continue;
          await unlink(blobPath(this.#blobDirectory, digest)).catch((error: unknown) => {
            if (errorCode(error) !== 'ENOENT') throw error;
          });
        }
      });
    } catch {
      // Best effort: when what the index refers to cannot be established, nothing is deleted.
      return;
    }
    await this.#removeCreatedDirectories(layoutDirectory);
  }

  /** Removes the layout directory this destination created, when it is still empty apart from `blobs/`. */
  async #removeCreatedDirectories(layoutDirectory: string): Promise<void> {
    if (!this.#createdLayoutDirectory || this.#usesSharedBlobDirectory) return;
    const blobs = layoutBlobDirectory(layoutDirectory);
    for (const directory of [path.join(blobs, canonicalDigestAlgorithm), blobs, layoutDirectory]) {
      try {
        await rmdir(directory);
      } catch {
        // Not empty (someone else uses it) or already gone.
      }
    }
  }
}

/** Opens `reference` for writing, creating the layout directory and its `blobs/` when missing. */
export async function openOciImageDestination(
  reference: OciReference,
  context: TransportContext,
  lockOptions: LayoutLockOptions,
): Promise<ImageDestination> {
  throwIfAborted(context.signal);
  if (reference.sourceIndex !== -1) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Destination reference must not contain a manifest index @${reference.sourceIndex}`,
    );
  }
  const layoutDirectory = reference.path || '.';
  let createdLayoutDirectory: boolean;
  try {
    createdLayoutDirectory = !(await pathExists(layoutDirectory));
    await mkdir(layoutBlobDirectory(layoutDirectory), { recursive: true });
  } catch (error) {
    throw fileSystemFailure(`creating OCI layout ${layoutDirectory}`, error);
  }
  // Fail now, not at commit, when the layout exists but is not one Gantry can add to.
  await readIndex(layoutDirectory);
  await checkLayoutVersion(layoutDirectory);
  const shared = context.ociSharedBlobDirectory;
  const blobDirectory = shared ? shared : layoutBlobDirectory(layoutDirectory);
  if (shared) await mkdir(shared, { recursive: true });
  const usage = new BlobUsage(await blobDirectoryKey(blobDirectory));
  return new OciImageDestination({
    reference,
    context,
    blobDirectory,
    createdLayoutDirectory,
    usage,
    lockOptions,
  });
}
