/**
 * Writing an image into an OCI layout.
 *
 * - Blobs (and manifests) go to `<layout>/blobs/<alg>/<hex>` (or `<shared>/<alg>/<hex>` with
 *   `transportOptions.oci.sharedBlobDirectory`): written to a temporary file in the blob directory while their digest and
 *   size are computed, checked against what was announced, then renamed into place. A failed or
 *   aborted write leaves no file behind. Temporary names carry their owner (`ownedTemporaryName`):
 *   opening a destination removes those of processes that died mid-write (`kill -9`) from the blob
 *   directory and the layout directory, never a live writer's.
 * - Nothing is visible in `index.json` until `commit`, which re-reads `index.json` under the layout lock
 *   (see lock.ts), adds the image, and writes it back atomically: concurrent writers to one layout, in
 *   one process or several, all end up in the index.
 * - The new entry carries the reference's name; an older entry with that name loses the name (and stays
 *   reachable as `@N`), and an unnamed entry with the same digest is replaced, as containers/image.
 * - `close` without `commit` deletes the blobs this destination created, except blobs `index.json`
 *   reaches and blobs other open destinations of this process use. Blobs in a shared blob directory are
 *   never deleted (other layouts may use them without Gantry being able to know).
 */
import { createWriteStream, fdatasync as fdatasyncCallback } from 'node:fs';
import { lstat, open, rename, rm, rmdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { promisify } from 'node:util';
import {
  abortError,
  type BlobInfo,
  type BlobToWrite,
  canonicalDigestAlgorithm,
  type Digest,
  ErrorCodes,
  GantryError,
  handBackWrittenChunks,
  type ImageDestination,
  type ImageDestinationProperties,
  makeDirectories,
  OffThreadDigester,
  type OperationOptions,
  ownedTemporaryName,
  type PutBlobOptions,
  parseDigest,
  type ReusedBlob,
  removeAbandonedTemporaryFiles,
  type TransportContext,
  type TryReusingBlobOptions,
  throwIfAborted,
} from '@gantry/core/transport';
import {
  addIndexEntry,
  assertDestinationWritable,
  checkDestinationReference,
  errorCode,
  fileSystemFailure,
  type IndexEntry,
  type LayoutIndex,
  layoutDestinationProperties,
  manifestStorageDigest,
  newIndexEntry,
  rejectSignatures,
  requireTopLevelEntry,
  reusedBlob,
} from '@gantry/oci-layout-format';
import { BlobUsage, blobDirectoryKey } from './blob-usage.js';
import { ociContextOptions } from './context-options.js';
import {
  blobPath,
  checkLayoutVersion,
  ensureLayoutFile,
  guessManifestMediaType,
  layoutBlobDirectory,
  reachableDigests,
  readIndex,
  writeIndex,
} from './layout.js';
import { type LayoutLockOptions, withLayoutLock } from './lock.js';
import type { OciReference } from './reference.js';

async function pathExists(filePath: string): Promise<boolean> {
  try {
    await lstat(filePath);
    return true;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return false;
    throw error;
  }
}

const fdatasync = promisify(fdatasyncCallback);

/** Flushes a file's bytes to disk (fsync). */
async function flushToDisk(filePath: string): Promise<void> {
  const handle = await open(filePath, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Runs at most `limit` operations at once, the others waiting in order. */
class Semaphore {
  #available: number;
  readonly #waiting: Array<() => void> = [];

  constructor(limit: number) {
    this.#available = limit;
  }

  async run<T>(operation: () => Promise<T>): Promise<T> {
    if (this.#available > 0) this.#available -= 1;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    return this.#runHolding(operation);
  }

  /** Runs `operation` if a place is free right now and nobody waits; else returns undefined. */
  tryRun<T>(operation: () => Promise<T>): Promise<T> | undefined {
    if (this.#available === 0 || this.#waiting.length > 0) return undefined;
    this.#available -= 1;
    return this.#runHolding(operation);
  }

  async #runHolding<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#available += 1;
    }
  }
}

/**
 * Bytes of a blob after which the part written so far is flushed to disk early (in the background, when a
 * flush can start at once): the disk then works while the copy goes on, and the flush that must finish
 * before the blob gets its name has less left to write.
 */
const earlyFlushBytes = 4 * 1024 * 1024;

/** Bytes a blob's write stream queues while a write is under way (written with one writev). */
const writeQueueBytes = 1024 * 1024;

/**
 * Writes `source`'s chunks into `output` as they come ('data' events: no iterator, generator or promise
 * per chunk), each handed to `each` first. `source` is paused while `output` holds `writableHighWaterMark`
 * bytes or more and while a promise `each` returned is pending. Once `source` ended, `beforeEnd` runs,
 * then `output` is ended; resolves when `output` closed after its last byte. A failure of `source` (an
 * error, or a close before its end: `ERR_STREAM_PREMATURE_CLOSE`), of `output`, of `each` or an abort of
 * `signal` rejects (with the abort's reason for an abort), after `beforeEnd` (so it can wait for what
 * uses `output`'s descriptor), with both streams destroyed and `output` closed.
 */
export function writeChunks(
  source: Readable,
  output: Writable,
  each: (chunk: Uint8Array) => Promise<void> | undefined,
  beforeEnd: () => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let failed = false;
    let ended = false;
    let waits = 0;
    let full = false;
    const resumeIfFree = (): void => {
      if (!failed && !ended && waits === 0 && !full) source.resume();
    };
    const onWaitDone = (): void => {
      waits -= 1;
      resumeIfFree();
    };
    const onData = (chunk: Uint8Array): void => {
      if (failed) return;
      let wait: Promise<void> | undefined;
      try {
        wait = each(chunk);
      } catch (error) {
        fail(error);
        return;
      }
      if (!output.write(chunk)) {
        full = true;
        source.pause();
      }
      if (wait !== undefined) {
        waits += 1;
        source.pause();
        wait.then(onWaitDone, fail);
      }
    };
    const onDrain = (): void => {
      full = false;
      resumeIfFree();
    };
    const onEnd = (): void => {
      ended = true;
      beforeEnd().then(() => {
        if (!failed) output.end();
      }, fail);
    };
    const onOutputClose = (): void => {
      if (failed) return;
      // Closed by anything but the end of its bytes (after `source` ended): a failure.
      if (!ended || !output.writableFinished) {
        fail(prematureClose());
        return;
      }
      detach();
      resolve();
    };
    const onSourceClose = (): void => {
      if (!ended) fail(source.errored ?? prematureClose());
    };
    const onAbort = (): void => {
      fail(signal!.reason);
    };
    function prematureClose(): Error {
      const error = new Error('Premature close') as Error & { code: string };
      error.code = 'ERR_STREAM_PREMATURE_CLOSE';
      return error;
    }
    function detach(): void {
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('close', onSourceClose);
      source.off('error', fail);
      output.off('drain', onDrain);
      output.off('error', fail);
      output.off('close', onOutputClose);
      signal?.removeEventListener('abort', onAbort);
      // Late errors of destroyed streams are expected; keep listeners so they are not uncaught.
      source.on('error', () => {});
      output.on('error', () => {});
    }
    function fail(error: unknown): void {
      if (failed) return;
      failed = true;
      detach();
      source.destroy();
      const settle = (): void => {
        destroyThenReject(error);
      };
      beforeEnd().then(settle, settle);
    }
    // Rejects once `output` has closed: a file stream destroyed while its open is still on the thread
    // pool creates the file after that, so a caller removing the file must not start before.
    function destroyThenReject(error: unknown): void {
      output.destroy();
      if (
        output.closed ||
        (output as { _writableState?: { emitClose?: boolean } })._writableState?.emitClose === false
      ) {
        reject(error);
        return;
      }
      output.once('close', () => reject(error));
    }
    if (signal?.aborted) {
      failed = true;
      source.destroy();
      destroyThenReject(signal.reason);
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    source.on('error', fail);
    output.on('error', fail);
    output.on('drain', onDrain);
    output.once('close', onOutputClose);
    source.once('close', onSourceClose);
    source.once('end', onEnd);
    if (source.errored) {
      fail(source.errored);
      return;
    }
    if (source.readableEnded) {
      onEnd();
      return;
    }
    if (source.destroyed) {
      fail(prematureClose());
      return;
    }
    source.on('data', onData);
    // Flowing even when it was paused before (a 'data' listener alone does not resume such a stream).
    source.resume();
  });
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
  /**
   * Every blob flush this destination started (blobs get their names once their bytes are on disk; the
   * copy goes on meanwhile): `commit` and `close` wait for them all, and a failed one fails the commit.
   * `tryReusingBlob` waits for the one of its digest, through `#usage` (shared by the destinations of
   * this process that write into the same directory).
   */
  readonly #settlements: Promise<void>[] = [];
  /** Flushes under way at once: each holds a libuv thread-pool thread, which file reads and writes need. */
  readonly #flushes = new Semaphore(2);
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
    this.#usesSharedBlobDirectory = Boolean(ociContextOptions(init.context).sharedBlobDirectory);
    this.#createdLayoutDirectory = init.createdLayoutDirectory;
    this.#usage = init.usage;
    this.#lockOptions = init.lockOptions;
    this.properties = layoutDestinationProperties({
      acceptUncompressedLayers: ociContextOptions(init.context).acceptUncompressedLayers === true,
      hasThreadSafePutBlob: true,
    });
  }

  #assertWritable(): void {
    assertDestinationWritable('oci', { closed: this.#closed, committed: this.#committed });
  }

  /** Moves a complete, verified temporary file into place as blob `digest`. */
  async #install(temporaryPath: string, digest: Digest): Promise<void> {
    const finalPath = blobPath(this.#blobDirectory, digest);
    await makeDirectories(path.dirname(finalPath));
    const existed = await pathExists(finalPath);
    await rename(temporaryPath, finalPath);
    if (!existed) this.#createdBlobs.add(digest);
    this.#imageBlobs.add(digest);
  }

  /**
   * Flushes a complete, verified temporary file to disk, then moves it into place as blob `digest`, in
   * the background: as containers/image does, every blob is on disk before it has its name (a crash never
   * leaves a named blob without its bytes), but the copy does not stop for the disk meanwhile.
   */
  #settleInBackground(temporaryPath: string, digest: Digest): void {
    const previous = this.#usage.settlementOf(digest);
    const settlement = (async () => {
      // The same blob written twice at once: installed one after the other.
      if (previous) await previous.catch(() => undefined);
      try {
        await this.#flushes.run(() => flushToDisk(temporaryPath));
        await this.#install(temporaryPath, digest);
      } catch (error) {
        await rm(temporaryPath, { force: true });
        throw fileSystemFailure(`writing blob ${digest} into ${this.#blobDirectory}`, error);
      }
    })();
    settlement.catch(() => undefined); // Reported by commit (or the reuse check that waits for it).
    this.#usage.settling(digest, settlement);
    this.#settlements.push(settlement);
  }

  /** Waits for every blob flush started; throws the first failure. */
  async #allSettled(): Promise<void> {
    const results = await Promise.allSettled(this.#settlements);
    const failure = results.find((result) => result.status === 'rejected');
    if (failure) throw (failure as PromiseRejectedResult).reason;
  }

  #temporaryPath(): string {
    return path.join(this.#blobDirectory, ownedTemporaryName('upload'));
  }

  async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
    this.#assertWritable();
    const signal = options.signal;
    throwIfAborted(signal);
    const expectedDigest = info.digest === undefined ? undefined : parseDigest(info.digest);
    if (expectedDigest) this.#usage.add(expectedDigest);
    await makeDirectories(this.#blobDirectory);
    const temporaryPath = this.#temporaryPath();
    let written: { digest: Digest; size: number } | undefined;
    // Chunks queued while a write is under way go to the file in one writev: with the default 16 KiB
    // mark, each chunk (64 KiB from a socket) would be its own write on the thread pool.
    const output = createWriteStream(temporaryPath, {
      flags: 'wx',
      mode: 0o644,
      highWaterMark: writeQueueBytes,
    });
    const flushes = this.#flushes;
    // Counts (or, without a named digest, hashes: see `blobWriteStage`) what is written, and starts
    // background flushes of what is written so far, in one stage.
    // Hashed on the thread pool where it can be, while this thread writes.
    const record = expectedDigest === undefined ? new OffThreadDigester() : undefined;
    // Chunks are handed back once written and, when hashed here, once hashed too (on the thread pool, in
    // order, maybe after the write is done): whichever comes last hands the chunk back.
    const chunkWritten = options.chunkWritten;
    const readers =
      record !== undefined && chunkWritten !== undefined ? new Map<Uint8Array, number>() : undefined;
    const readerDone = (chunk: Uint8Array): void => {
      const left = (readers!.get(chunk) ?? 1) - 1;
      if (left > 0) {
        readers!.set(chunk, left);
        return;
      }
      readers!.delete(chunk);
      chunkWritten!(chunk);
    };
    if (chunkWritten !== undefined) handBackWrittenChunks(output, readers ? readerDone : chunkWritten);
    let size = 0;
    let unflushed = 0;
    let early: Promise<void> | undefined;
    const each = (chunk: Uint8Array): Promise<void> | undefined => {
      let wait: Promise<void> | undefined;
      if (readers) {
        readers.set(chunk, (readers.get(chunk) ?? 0) + 2);
        wait = record!.update(chunk, () => readerDone(chunk));
      } else wait = record?.update(chunk);
      size += chunk.byteLength;
      unflushed += chunk.byteLength;
      // `fd` is a number once the file is open (Node sets it; @types/node does not declare it).
      const fd = (output as unknown as { fd: number | null }).fd;
      if (unflushed >= earlyFlushBytes && early === undefined && typeof fd === 'number') {
        early = flushes
          .tryRun(() => fdatasync(fd))
          ?.then(
            () => {
              early = undefined;
            },
            // Only a head start: the flush before the blob gets its name is the one that counts.
            () => {
              early = undefined;
            },
          );
        if (early) unflushed = 0;
      }
      return wait;
    };
    // The file is closed after this: no flush may still use its descriptor then.
    const beforeEnd = async (): Promise<void> => {
      while (early) await early;
    };
    try {
      await writeChunks(stream, output, each, beforeEnd, signal);
      written = { digest: record === undefined ? expectedDigest! : await record.digest(), size };
      const description = `blob ${expectedDigest ?? written.digest}`;
      if (info.size >= 0 && written.size !== info.size) {
        throw new GantryError(
          ErrorCodes.SizeMismatch,
          `${description}: size mismatch: expected ${info.size} bytes, got ${written.size}`,
        );
      }
      this.#usage.add(written.digest);
    } catch (error) {
      await rm(temporaryPath, { force: true });
      if (signal?.aborted) throw abortError(signal);
      throw fileSystemFailure(`writing blob into ${this.#blobDirectory}`, error);
    }
    this.#settleInBackground(temporaryPath, written.digest);
    const result: BlobInfo = { digest: written.digest, size: written.size };
    if (info.mediaType !== undefined) result.mediaType = info.mediaType;
    return result;
  }

  async tryReusingBlob(info: BlobInfo, options: TryReusingBlobOptions): Promise<ReusedBlob> {
    this.#assertWritable();
    throwIfAborted(options.signal);
    const digest = parseDigest(info.digest);
    this.#usage.add(digest);
    // Written by a destination of this process and still being flushed: reusable once it has its name.
    const settling = this.#usage.settlementOf(digest);
    if (settling) await settling;
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
    this.#usage.add(digest);
    await makeDirectories(this.#blobDirectory);
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
    this.#topLevel = newIndexEntry(
      manifest,
      mediaType,
      digest,
      this.reference.imageName,
      guessManifestMediaType,
    );
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
    const topLevel = requireTopLevelEntry('oci', this.#topLevel);
    const layoutDirectory = this.reference.path || '.';
    await this.#allSettled();
    await makeDirectories(layoutDirectory);
    await withLayoutLock(layoutDirectory, { ...this.#lockOptions, signal: options?.signal }, async () => {
      const index: LayoutIndex = (await readIndex(layoutDirectory)) ?? {
        entries: [],
        raw: { schemaVersion: 2 },
      };
      for (const digest of this.#imageBlobs) {
        if (!(await pathExists(blobPath(this.#blobDirectory, digest)))) {
          throw new GantryError(
            ErrorCodes.BlobNotFound,
            `cannot commit ${this.reference.describeImage()} to OCI layout ${layoutDirectory}: blob ${digest} disappeared from ${this.#blobDirectory} while the image was written (deleted by a concurrent operation?)`,
          );
        }
      }
      addIndexEntry(index, topLevel, 'unname');
      await ensureLayoutFile(layoutDirectory);
      await writeIndex(layoutDirectory, index);
    });
    this.#committed = true;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      // Blobs still being flushed get their names first, so that discarding finds every one it created.
      await Promise.allSettled(this.#settlements);
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
  checkDestinationReference(reference);
  const layoutDirectory = reference.path || '.';
  let createdLayoutDirectory: boolean;
  try {
    createdLayoutDirectory = !(await pathExists(layoutDirectory));
    await makeDirectories(layoutBlobDirectory(layoutDirectory));
  } catch (error) {
    throw fileSystemFailure(`creating OCI layout ${layoutDirectory}`, error);
  }
  // Fail now, not at commit, when the layout exists but is not one Gantry can add to.
  await readIndex(layoutDirectory);
  await checkLayoutVersion(layoutDirectory);
  const shared = ociContextOptions(context).sharedBlobDirectory;
  const blobDirectory = shared ? shared : layoutBlobDirectory(layoutDirectory);
  if (shared) await makeDirectories(shared);
  // Temporary files of writers that died (kill -9) go now; a live writer's stay (core temporary-files).
  for (const directory of new Set([blobDirectory, layoutBlobDirectory(layoutDirectory), layoutDirectory])) {
    await removeAbandonedTemporaryFiles(directory);
  }
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
