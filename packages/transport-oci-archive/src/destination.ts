/**
 * Writing an image into an OCI archive, streaming: the archive is written as a tar into a temporary
 * file next to the destination (named by `ownedTemporaryName`, labelled with the destination's file
 * name; opening a destination removes those of writers that died), and renamed over the destination
 * on `commit`.
 *
 * - Blobs are appended to the tar (`@gantry/tar-archive`'s `SeekableTarWriter`) as they arrive
 *   (`blobs/<alg>/<hex>`): a header is reserved, the data streamed (hashed when the digest is unknown),
 *   and the header written once the size and name are known.
 *   A named digest is not hashed again: by the contract the caller's stream fails before its end when
 *   the bytes do not match it (the copy pipeline's `verifyingStage`). A blob whose stream fails, or
 *   whose size is not the announced one, is taken back (the temporary file is truncated to where it
 *   began), so nothing is stored under a wrong digest and the destination stays usable. A blob written
 *   twice is stored once.
 * - Manifests are appended as blobs by `putManifest`; `commit` appends what it keeps of an existing
 *   archive (below), then `oci-layout` and `index.json` last, the end-of-archive marker, flushes the
 *   file to disk and renames it over the destination. `close` without `commit` deletes the temporary
 *   file: a failed copy leaves no file and does not touch an existing archive.
 * - An existing archive at the destination: an unnamed write replaces it, as containers/image does;
 *   a named write keeps its other named images (containers/image replaces the whole archive), streamed
 *   from the old archive into the new one, and drops the entry holding the same name and the unnamed
 *   entries (see `keptIndex`); blobs only dropped entries reached are dropped. A destination file
 *   that exists but is not an OCI archive (or is a directory) is refused with `ERR_GANTRY_INVALID_LAYOUT`
 *   before anything is written; an empty file counts as no archive.
 * - Writers to one archive path take turns: a destination holds the path's lock (`lockPath`, a lock file
 *   `.<name>.gantry-lock` beside the archive) from its opening, before the existing archive is read, to
 *   its commit or close. So writers of several processes at once each add their image to the archive the
 *   one before them committed, and every finished copy is in the archive (a writer waits, abortable, while
 *   another holds the lock; the lock of a writer that died is broken).
 * - `tryReusingBlob` reports blobs already written to this archive, and blobs of the existing archive
 *   (copied from it at commit) as reusable.
 */

import type { FileHandle } from 'node:fs/promises';
import { lstat, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import {
  abortError,
  type BlobInfo,
  type BlobToWrite,
  canonicalDigestAlgorithm,
  type Digest,
  type DigestAlgorithm,
  Digester,
  digestAlgorithm,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageDestinationProperties,
  isGantryError,
  lockPath,
  MediaTypes,
  type OperationOptions,
  ownedTemporaryName,
  type PathLock,
  type PutBlobOptions,
  parseDigest,
  type ReusedBlob,
  removeAbandonedTemporaryFiles,
  type TransportContext,
  type TryReusingBlobOptions,
  throwIfAborted,
  verifyingStage,
} from '@gantry/core/transport';
import {
  addIndexEntry,
  assertDestinationWritable,
  blobEntryName,
  blobsDirectoryName,
  checkDestinationReference,
  errorCode,
  fileSystemFailure,
  type IndexEntry,
  indexFileName,
  type LayoutIndex,
  layoutDestinationProperties,
  layoutFileContent,
  layoutFileName,
  manifestStorageDigest,
  newIndexEntry,
  reachableDigests,
  rejectSignatures,
  requireTopLevelEntry,
  reusedBlob,
  serializeIndex,
} from '@gantry/oci-layout-format';
import { SeekableTarWriter } from '@gantry/tar-archive';
import { type OciArchiveContents, openOciArchive } from './archive.js';
import { ociArchiveContextOptions } from './context-options.js';
import type { OciArchiveReference } from './reference.js';

/**
 * What the new archive keeps of an existing archive's index before the written image joins it:
 * - an unnamed write (`oci-archive:x.tar`) replaces the whole archive, as containers/image does: the
 *   archive is that one image (so `oci-archive:x.tar` reads it back, instead of failing with "more
 *   than one image" after two different images were written);
 * - a named write keeps the other named images (a deviation from containers/image, which replaces the
 *   archive every time) and drops unnamed ones, which only an unnamed write made and which
 *   containers/image would have replaced too; the entry holding the same name is replaced by
 *   `addIndexEntry`.
 */
export function keptIndex(existing: LayoutIndex | undefined, imageName: string): LayoutIndex {
  if (existing === undefined || imageName === '') {
    return { entries: [], raw: { schemaVersion: 2, mediaType: MediaTypes.OciIndex } };
  }
  return {
    entries: existing.entries.filter((entry) => (entry.referenceName ?? '') !== ''),
    raw: { ...existing.raw },
  };
}

/** Runs tasks one after another (the tar is written sequentially). */
class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task, task);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

class OciArchiveImageDestination implements ImageDestination {
  readonly reference: OciArchiveReference;
  readonly properties: ImageDestinationProperties;
  readonly #temporaryPath: string;
  readonly #lock: PathLock;
  readonly #handle: FileHandle;
  readonly #writer: SeekableTarWriter;
  readonly #existing: OciArchiveContents | undefined;
  readonly #queue = new SerialQueue();
  /** Blobs (manifests included) written to the new tar, with their sizes. */
  readonly #written = new Map<Digest, number>();
  /** Blob directories (`blobs/<alg>/`) written. */
  readonly #directories = new Set<string>();
  /** Blobs of the image that `tryReusingBlob` found in the existing archive (copied from it at commit). */
  readonly #reusedFromExisting = new Set<Digest>();
  #topLevel: IndexEntry | undefined;
  #committed = false;
  #closed = false;

  constructor(init: {
    reference: OciArchiveReference;
    context: TransportContext;
    temporaryPath: string;
    lock: PathLock;
    handle: FileHandle;
    existing: OciArchiveContents | undefined;
  }) {
    this.reference = init.reference;
    this.#temporaryPath = init.temporaryPath;
    this.#lock = init.lock;
    this.#handle = init.handle;
    // Entries are dated now, as containers/image's archives are (the files it tars are written now).
    this.#writer = new SeekableTarWriter(init.handle, { mtime: new Date() });
    this.#existing = init.existing;
    this.properties = layoutDestinationProperties({
      acceptUncompressedLayers: ociArchiveContextOptions(init.context).acceptUncompressedLayers === true,
      hasThreadSafePutBlob: false,
    });
  }

  #assertWritable(): void {
    assertDestinationWritable('oci-archive', { closed: this.#closed, committed: this.#committed });
  }

  /** Writes `blobs/` and `blobs/<alg>/` directory entries the first time an algorithm is used. */
  async #ensureDirectories(algorithm: DigestAlgorithm): Promise<void> {
    if (this.#directories.size === 0) {
      await this.#writer.addDirectory(`${blobsDirectoryName}/`);
      this.#directories.add('');
    }
    if (!this.#directories.has(algorithm)) {
      await this.#writer.addDirectory(`${blobsDirectoryName}/${algorithm}/`);
      this.#directories.add(algorithm);
    }
  }

  async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
    this.#assertWritable();
    const signal = options.signal;
    throwIfAborted(signal);
    const expectedDigest = info.digest === undefined ? undefined : parseDigest(info.digest);
    const written = await this.#queue.run(async () => {
      this.#assertWritable();
      try {
        return await this.#putBlobNow(stream, info.size, expectedDigest, signal);
      } catch (error) {
        stream.destroy();
        if (signal?.aborted) throw abortError(signal);
        throw fileSystemFailure(`writing a blob into ${this.#temporaryPath}`, error);
      }
    });
    const result: BlobInfo = { digest: written.digest, size: written.size };
    if (info.mediaType !== undefined) result.mediaType = info.mediaType;
    return result;
  }

  async #putBlobNow(
    stream: Readable,
    expectedSize: number,
    expectedDigest: Digest | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ digest: Digest; size: number }> {
    // A named digest is guaranteed by the caller (its stream fails before the end otherwise, see the
    // contract), so the bytes are hashed only when the digest is unknown.
    const digester = expectedDigest === undefined ? new Digester(canonicalDigestAlgorithm) : undefined;
    const description = `blob ${expectedDigest ?? '(digest not known yet)'}`;
    const sizeMismatch = (size: number | 'more') =>
      new GantryError(
        ErrorCodes.SizeMismatch,
        `${description}: size mismatch: expected ${expectedSize} bytes, got ${size}`,
      );
    /** Reads `stream` to its end, passing each chunk to `use` after checking the size. */
    const readAll = async (use: (chunk: Uint8Array) => Promise<void> | void): Promise<number> => {
      let size = 0;
      for await (const chunk of stream) {
        throwIfAborted(signal);
        const bytes: Uint8Array = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        size += bytes.byteLength;
        if (expectedSize >= 0 && size > expectedSize) throw sizeMismatch('more');
        digester?.update(bytes);
        await use(bytes);
      }
      if (expectedSize >= 0 && size !== expectedSize) throw sizeMismatch(size);
      return size;
    };
    if (expectedDigest !== undefined && this.#written.has(expectedDigest)) {
      // Already in the archive: read the stream to its end (the caller's verification runs) and keep one copy.
      return { digest: expectedDigest, size: await readAll(() => undefined) };
    }
    await this.#ensureDirectories(
      expectedDigest ? digestAlgorithm(expectedDigest) : canonicalDigestAlgorithm,
    );
    // The header is written when the data has ended (reserved now when the name is known: a PAX header for
    // names longer than ustar allows); a failed blob is taken back.
    const entry = await this.#writer.beginEntry(
      expectedDigest !== undefined ? { name: blobEntryName(expectedDigest) } : {},
    );
    let size: number;
    let digest: Digest;
    try {
      size = await readAll((chunk) => entry.write(chunk));
      digest = expectedDigest ?? (digester as Digester).digest();
    } catch (error) {
      await entry.discard();
      throw error;
    }
    if (this.#written.has(digest)) {
      // Written before under this digest (it was unknown when this write began): keep the first copy.
      await entry.discard();
    } else {
      await entry.commit(expectedDigest === undefined ? blobEntryName(digest) : undefined);
      this.#written.set(digest, size);
    }
    return { digest, size };
  }

  async tryReusingBlob(info: BlobInfo, options: TryReusingBlobOptions): Promise<ReusedBlob> {
    this.#assertWritable();
    throwIfAborted(options.signal);
    const digest = parseDigest(info.digest);
    const writtenSize = this.#written.get(digest);
    const size = writtenSize ?? this.#existing?.blobSize(digest);
    if (size === undefined) return { reused: false };
    if (info.size >= 0 && size !== info.size) return { reused: false };
    if (writtenSize === undefined) this.#reusedFromExisting.add(digest);
    return reusedBlob(info, digest, size);
  }

  async putManifest(
    manifest: Uint8Array,
    mediaType: string,
    instanceDigest?: Digest,
    options?: OperationOptions,
  ): Promise<void> {
    this.#assertWritable();
    throwIfAborted(options?.signal);
    const digest = manifestStorageDigest(manifest, instanceDigest);
    await this.#queue.run(async () => {
      this.#assertWritable();
      if (this.#written.has(digest)) return;
      try {
        await this.#ensureDirectories(digestAlgorithm(digest));
        await this.#writer.addBytes(blobEntryName(digest), manifest);
      } catch (error) {
        throw fileSystemFailure(`writing manifest ${digest} into ${this.#temporaryPath}`, error);
      }
      this.#written.set(digest, manifest.byteLength);
    });
    if (instanceDigest === undefined) {
      this.#topLevel = newIndexEntry(manifest, mediaType, digest, this.reference.imageName);
    }
  }

  async putSignatures(
    signatures: Uint8Array[],
    _instanceDigest?: Digest,
    options?: OperationOptions,
  ): Promise<void> {
    this.#assertWritable();
    throwIfAborted(options?.signal);
    rejectSignatures(signatures);
  }

  async commit(options?: OperationOptions): Promise<void> {
    this.#assertWritable();
    const topLevel = requireTopLevelEntry('oci-archive', this.#topLevel);
    const signal = options?.signal;
    await this.#queue.run(async () => {
      this.#assertWritable();
      const index = keptIndex(this.#existing?.index, this.reference.imageName);
      addIndexEntry(index, topLevel, 'drop');
      try {
        if (this.#existing) await this.#copyKeptBlobs(this.#existing, index, signal);
        await this.#writer.addBytes(layoutFileName, layoutFileContent());
        await this.#writer.addBytes(indexFileName, serializeIndex(index));
        await this.#writer.finish();
        await this.#handle.sync();
        await this.#handle.close();
        throwIfAborted(signal);
        await rename(this.#temporaryPath, this.reference.resolvedPath);
      } catch (error) {
        if (signal?.aborted) throw abortError(signal);
        throw fileSystemFailure(`writing OCI archive ${this.reference.resolvedPath}`, error);
      }
      this.#committed = true;
    });
    await this.#existing?.close();
    await this.#lock.release();
  }

  /**
   * Streams into the new tar the blobs of the existing archive that are still needed: everything the
   * kept entries reach, and the blobs the new image reused from it (`tryReusingBlob`).
   */
  async #copyKeptBlobs(existing: OciArchiveContents, index: LayoutIndex, signal: AbortSignal | undefined) {
    const keptEntries = index.entries.filter((entry) => entry !== this.#topLevel);
    let reachable: Set<Digest>;
    try {
      reachable = await reachableDigests((digest) => existing.readManifest(digest), keptEntries);
    } catch (error) {
      if (!isGantryError(error)) throw error;
      throw new GantryError(
        error.code,
        `cannot keep the other images of the existing OCI archive ${existing.path}: ${error.message}`,
        { cause: error },
      );
    }
    for (const digest of [...reachable, ...this.#reusedFromExisting]) {
      if (this.#written.has(digest)) continue;
      const size = existing.blobSize(digest);
      if (size === undefined) {
        throw new GantryError(
          ErrorCodes.InvalidLayout,
          `cannot keep the images of OCI archive ${existing.path}: blob ${digest} they refer to is missing from it`,
        );
      }
      throwIfAborted(signal);
      await this.#ensureDirectories(digestAlgorithm(digest));
      const verify = verifyingStage({
        expectedDigest: digest,
        expectedSize: size,
        description: `blob ${digest} of the existing archive ${existing.path}`,
      });
      await this.#writer.addStream(
        blobEntryName(digest),
        verify(existing.openBlob(digest)),
        size,
        signal ? { signal } : {},
      );
      this.#written.set(digest, size);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#committed) {
      await this.#lock.release();
      return;
    }
    await this.#queue.run(async () => {
      await this.#handle.close().catch(() => undefined);
      await rm(this.#temporaryPath, { force: true });
      await this.#existing?.close();
      await this.#lock.release();
    });
  }
}

/**
 * Opens `reference` for writing: refuses `@N`, a destination that is a directory or a file that is
 * not an OCI archive; creates the temporary file next to the destination.
 */
export async function openOciArchiveDestination(
  reference: OciArchiveReference,
  context: TransportContext,
): Promise<ImageDestination> {
  throwIfAborted(context.signal);
  checkDestinationReference(reference);
  const destinationPath = reference.resolvedPath;
  let lock: PathLock;
  try {
    lock = await lockPath(destinationPath, context.signal ? { signal: context.signal } : {});
  } catch (error) {
    if (isGantryError(error)) throw error;
    throw fileSystemFailure(`locking OCI archive ${destinationPath}`, error);
  }
  try {
    return await openLocked(reference, context, lock);
  } catch (error) {
    await lock.release().catch(() => undefined);
    throw error;
  }
}

async function openLocked(
  reference: OciArchiveReference,
  context: TransportContext,
  lock: PathLock,
): Promise<ImageDestination> {
  const destinationPath = reference.resolvedPath;
  let existing: OciArchiveContents | undefined;
  let stats: Awaited<ReturnType<typeof lstat>> | undefined;
  try {
    stats = await lstat(destinationPath);
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw fileSystemFailure(`checking ${destinationPath}`, error);
  }
  if (stats?.isDirectory()) {
    throw new GantryError(
      ErrorCodes.InvalidLayout,
      `cannot write OCI archive ${destinationPath}: it is a directory (use oci:${reference.path} for an OCI layout directory)`,
    );
  }
  if (stats && !stats.isFile()) {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `cannot write OCI archive ${destinationPath}: it is not a regular file (writing to pipes or devices is not supported)`,
    );
  }
  if (stats && stats.size > 0) {
    try {
      existing = await openOciArchive(destinationPath, { signal: context.signal });
    } catch (error) {
      if (!isGantryError(error))
        throw fileSystemFailure(`reading existing archive ${destinationPath}`, error);
      // Replaced by another writer while being read: opening again (--retry-times) reads the new one.
      if (error.retryable) throw error;
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `cannot add an image to ${destinationPath}: the existing file is not a readable OCI archive (${error.message}); remove it or write elsewhere`,
        { cause: error },
      );
    }
  }
  // Temporary archives for this destination left by writers that died (kill -9) go now; a live
  // writer's stay.
  await removeAbandonedTemporaryFiles(path.dirname(destinationPath), {
    label: path.basename(destinationPath),
  });
  const temporaryPath = path.join(
    path.dirname(destinationPath),
    ownedTemporaryName(path.basename(destinationPath)),
  );
  let handle: FileHandle;
  try {
    handle = await open(temporaryPath, 'wx+', 0o644);
  } catch (error) {
    await existing?.close();
    throw fileSystemFailure(`creating a temporary file for OCI archive ${destinationPath}`, error);
  }
  return new OciArchiveImageDestination({ reference, context, temporaryPath, lock, handle, existing });
}
