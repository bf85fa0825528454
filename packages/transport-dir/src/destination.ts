import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { chmod, lstat, mkdir, open, readdir, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  type BlobInfo,
  type BlobToWrite,
  blobWriteStage,
  type Digest,
  ErrorCodes,
  errorCode,
  GantryError,
  handBackWrittenChunks,
  type ImageDestination,
  type ImageDestinationProperties,
  makeDirectories,
  type OperationOptions,
  ownedTemporaryName,
  type PutBlobOptions,
  parseDigest,
  parseOwnedTemporaryName,
  type ReusedBlob,
  removeAbandonedTemporaryFiles,
  type TransportContext,
  type TryReusingBlobOptions,
  temporaryOwnerState,
  throwIfAborted,
} from '@gantry/core/transport';
import { commitLockName, withCommitLock } from './commit-lock.js';
import { dirContextOptions } from './context-options.js';
import {
  blobFileName,
  dirTransportVersion,
  manifestFileName,
  signatureFileName,
  topLevelManifestFileName,
  versionFileName,
} from './layout.js';
import type { DirImageReference } from './reference.js';
import { combineSignals, toGantryError } from './signals.js';

/** Where a staged file goes at commit, in the order commit moves them. */
type StagedKind = 'blob' | 'instance-manifest' | 'signature' | 'top-level-manifest';

/**
 * Writes an image into a `dir:` directory.
 *
 * The layout is containers/image's (see `layout.ts`), and so are the checks made when opening; the
 * difference is that Gantry's writes are transactional:
 *
 * - Opening: a missing directory is created (with its missing parents). An existing non-empty
 *   directory must hold a `version` file containing exactly `Directory Transport Version: 1.1\n`,
 *   otherwise opening fails with `ERR_GANTRY_INVALID_LAYOUT` ("not a containers image directory,
 *   don't want to overwrite important data"), as containers/image refuses. A `version` file is written
 *   if there is none. Unlike containers/image, the previous image is *not* erased when opening: it stays
 *   readable until `commit`.
 * - Every blob, manifest and signature is written into a private staging directory
 *   (`<dir>/.gantry-tmp-<owner>.<random>.staging/`, named by `ownedTemporaryName`), each file under a temporary name first and renamed to its layout
 *   name only once complete (a blob only after its stream ended cleanly and its digest and size were
 *   checked).
 * - `commit` moves the files into the directory: blobs and instance manifests (content-addressed, so
 *   they cannot disturb the previous image) first; then it removes the previous `manifest.json` and
 *   every other entry that is not part of the new image (the directory holds one image at a time, as
 *   with containers/image, which erases it all); then the signatures; and `manifest.json` last. A
 *   reader therefore sees the previous image, then no image (no `manifest.json`), then the new image.
 *   If `commit` fails after the old `manifest.json` was removed, the directory holds no image. Commits
 *   to one directory take turns (`withCommitLock`, processes included), so concurrent writers leave
 *   one complete image: the last to commit.
 * - `close` without `commit` removes the staging directory, the `version` file if this destination
 *   wrote it, and the directories it created (if they are empty), leaving the directory as it was.
 *   A process that dies mid-write leaves only the staging directory, which the next destination
 *   opened on the same directory removes (its owner is gone); a live writer's staging directory is
 *   left alone, also by `commit`.
 * - `tryReusingBlob` reuses blobs staged by this destination and blobs of the previous image in the
 *   directory (whose files are then kept at commit), when their size matches the expected size.
 *
 * Properties: any manifest type; layers compressed when `transportOptions.dir.forceCompress`, decompressed
 * when `forceDecompress` (both at once is an error), kept as they are otherwise; signatures
 * supported; foreign layer URLs not kept (the layers are copied); `putBlob` may run concurrently.
 */
class DirImageDestination implements ImageDestination {
  readonly reference: DirImageReference;
  readonly properties: ImageDestinationProperties;
  private readonly directory: string;
  private readonly stagingDirectory: string;
  private readonly contextSignal: AbortSignal | undefined;
  private readonly createdVersionFile: boolean;
  /** Directories created when opening, deepest first. */
  private readonly createdDirectories: readonly string[];
  /** Files in the staging directory, by layout name. */
  private readonly staged = new Map<string, StagedKind>();
  /** Sizes of staged blobs, by file name. */
  private readonly stagedBlobSizes = new Map<string, number>();
  /** Blob files of the previous image that the new image reuses. */
  private readonly reusedBlobs = new Set<string>();
  /** Number of staged signatures by instance (key '' for the top level). */
  private readonly signatureCounts = new Map<string, number>();
  private committed = false;
  private closed = false;

  constructor(init: {
    reference: DirImageReference;
    context: TransportContext;
    desiredLayerCompression: ImageDestinationProperties['desiredLayerCompression'];
    directory: string;
    stagingDirectory: string;
    createdVersionFile: boolean;
    createdDirectories: string[];
  }) {
    this.reference = init.reference;
    this.contextSignal = init.context.signal;
    this.directory = init.directory;
    this.stagingDirectory = init.stagingDirectory;
    this.createdVersionFile = init.createdVersionFile;
    this.createdDirectories = init.createdDirectories;
    this.properties = Object.freeze({
      supportedManifestMimeTypes: undefined,
      desiredLayerCompression: init.desiredLayerCompression,
      acceptsForeignLayerURLs: false,
      mustMatchRuntimeOS: false,
      supportsSignatures: true,
      hasThreadSafePutBlob: true,
      ignoresEmbeddedDockerReference: false,
    });
  }

  private get options() {
    return this.reference.options;
  }

  private begin(options: OperationOptions | undefined): AbortSignal | undefined {
    if (this.closed) {
      throw new GantryError(ErrorCodes.Internal, `${this.reference}: image destination used after close()`);
    }
    if (this.committed) {
      throw new GantryError(ErrorCodes.Internal, `${this.reference}: image destination used after commit()`);
    }
    const signal = combineSignals(this.contextSignal, options?.signal);
    throwIfAborted(signal);
    return signal;
  }

  private temporaryPath(): string {
    return path.join(this.stagingDirectory, `${randomUUID()}.partial`);
  }

  /** Finishes a file written through `handle`: sets its mode and flushes it when durable. */
  private async finishFile(handle: FileHandle): Promise<void> {
    await handle.chmod(this.options.fileMode);
    if (this.options.durable) await handle.sync();
  }

  /** Writes a small file into the staging directory under a temporary name, then renames it to `name`. */
  private async writeStagedFile(
    name: string,
    bytes: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const temporary = this.temporaryPath();
    let handle: FileHandle | undefined;
    try {
      handle = await open(temporary, 'wx', this.options.fileMode);
      await handle.writeFile(bytes, { signal });
      await this.finishFile(handle);
      await handle.close();
      handle = undefined;
      throwIfAborted(signal);
      await rename(temporary, path.join(this.stagingDirectory, name));
    } catch (error) {
      await handle?.close().catch(() => {});
      await rm(temporary, { force: true });
      throw toGantryError(error, signal, `${this.reference}: writing ${name}`);
    }
  }

  async putBlob(stream: Readable, info: BlobToWrite, options: PutBlobOptions): Promise<BlobInfo> {
    let signal: AbortSignal | undefined;
    let expectedDigest: Digest | undefined;
    try {
      signal = this.begin(options);
      if (info.digest !== undefined) expectedDigest = parseDigest(info.digest);
    } catch (error) {
      stream.destroy();
      throw error;
    }
    const temporary = this.temporaryPath();
    try {
      let written: { digest: Digest; size: number } | undefined;
      const output = createWriteStream(temporary, {
        flags: 'wx',
        mode: this.options.fileMode,
        flush: this.options.durable,
      });
      // The file is the chunks' last reader (with a named digest they are only counted on their way).
      if (options.chunkWritten !== undefined && expectedDigest !== undefined) {
        handBackWrittenChunks(output, options.chunkWritten);
      }
      await pipeline(
        stream,
        blobWriteStage(expectedDigest, (result) => {
          written = result;
        }),
        output,
        signal ? { signal } : {},
      );
      if (!written)
        throw new GantryError(ErrorCodes.Internal, `${this.reference}: blob stream ended without a digest`);
      const description = `${this.reference}: blob ${info.digest ?? written.digest}`;
      if (info.size >= 0 && written.size !== info.size) {
        throw new GantryError(
          ErrorCodes.SizeMismatch,
          `${description}: size mismatch: expected ${info.size} bytes, got ${written.size}`,
        );
      }
      await chmod(temporary, this.options.fileMode);
      throwIfAborted(signal);
      const name = blobFileName(written.digest);
      await rename(temporary, path.join(this.stagingDirectory, name));
      this.staged.set(name, 'blob');
      this.stagedBlobSizes.set(name, written.size);
      const stored: BlobInfo = { digest: written.digest, size: written.size };
      if (info.mediaType !== undefined) stored.mediaType = info.mediaType;
      return stored;
    } catch (error) {
      stream.destroy();
      await rm(temporary, { force: true });
      throw toGantryError(error, signal, `${this.reference}: writing blob ${info.digest ?? ''}`.trimEnd());
    }
  }

  async tryReusingBlob(info: BlobInfo, options: TryReusingBlobOptions): Promise<ReusedBlob> {
    const signal = this.begin(options);
    const name = blobFileName(info.digest);
    const matches = (size: number) => info.size < 0 || info.size === size;
    const stagedSize = this.stagedBlobSizes.get(name);
    if (stagedSize !== undefined && matches(stagedSize)) {
      return { reused: true, blob: { digest: info.digest, size: stagedSize } };
    }
    try {
      const existing = await stat(path.join(this.directory, name));
      if (!existing.isFile() || !matches(existing.size)) return { reused: false };
      this.reusedBlobs.add(name);
      return { reused: true, blob: { digest: info.digest, size: existing.size } };
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return { reused: false };
      throw toGantryError(error, signal, `${this.reference}: checking for blob ${info.digest}`);
    }
  }

  async putManifest(
    manifest: Uint8Array,
    _mediaType: string,
    instanceDigest?: Digest,
    options?: OperationOptions,
  ): Promise<void> {
    const signal = this.begin(options);
    const name = manifestFileName(instanceDigest);
    await this.writeStagedFile(name, manifest, signal);
    this.staged.set(name, instanceDigest === undefined ? 'top-level-manifest' : 'instance-manifest');
  }

  async putSignatures(
    signatures: Uint8Array[],
    instanceDigest?: Digest,
    options?: OperationOptions,
  ): Promise<void> {
    const signal = this.begin(options);
    const key = instanceDigest ?? '';
    const previousCount = this.signatureCounts.get(key) ?? 0;
    // Signatures replace the ones staged before for the same manifest: drop the surplus first.
    for (let index = signatures.length; index < previousCount; index++) {
      const name = signatureFileName(index, instanceDigest);
      await rm(path.join(this.stagingDirectory, name), { force: true });
      this.staged.delete(name);
    }
    this.signatureCounts.set(key, Math.min(previousCount, signatures.length));
    for (const [index, signature] of signatures.entries()) {
      const name = signatureFileName(index, instanceDigest);
      await this.writeStagedFile(name, signature, signal);
      this.staged.set(name, 'signature');
    }
    this.signatureCounts.set(key, signatures.length);
  }

  private async moveStaged(kind: StagedKind, signal: AbortSignal | undefined): Promise<void> {
    for (const [name, stagedKind] of this.staged) {
      if (stagedKind !== kind) continue;
      throwIfAborted(signal);
      await rename(path.join(this.stagingDirectory, name), path.join(this.directory, name));
    }
  }

  async commit(options?: OperationOptions): Promise<void> {
    const signal = this.begin(options);
    if (!this.staged.has(topLevelManifestFileName)) {
      throw new GantryError(ErrorCodes.Internal, `${this.reference}: commit() without a top-level manifest`);
    }
    try {
      // One commit at a time per directory (other processes included), see commit-lock.ts.
      await withCommitLock(this.directory, () => this.commitLocked(signal), { signal });
    } catch (error) {
      throw toGantryError(error, signal, `${this.reference}: committing the image`);
    }
    await rm(this.stagingDirectory, { recursive: true, force: true });
  }

  private async commitLocked(signal: AbortSignal | undefined): Promise<void> {
    // Blobs of the previous image this one reuses must still be there (another writer's commit
    // may have replaced that image since).
    for (const name of this.reusedBlobs) {
      try {
        await lstat(path.join(this.directory, name));
      } catch {
        throw new GantryError(
          ErrorCodes.Transient,
          `${this.reference}: ${name}, reused from the image that was in the directory, was removed by another writer; copy again`,
          { retryable: true },
        );
      }
    }
    // Content-addressed files first: they do not change what the previous image means.
    await this.moveStaged('blob', signal);
    await this.moveStaged('instance-manifest', signal);
    // From here on the previous image is gone: manifest.json first, then everything else not kept.
    throwIfAborted(signal);
    await rm(path.join(this.directory, topLevelManifestFileName), { force: true });
    const keep = new Set<string>([
      versionFileName,
      commitLockName,
      path.basename(this.stagingDirectory),
      ...this.reusedBlobs,
    ]);
    for (const [name, kind] of this.staged) {
      if (kind === 'blob' || kind === 'instance-manifest') keep.add(name);
    }
    for (const entry of await readdir(this.directory)) {
      if (keep.has(entry)) continue;
      // Another writer's staging directory stays unless its owner is gone.
      const owned = parseOwnedTemporaryName(entry);
      if (owned && temporaryOwnerState(owned.owner) !== 'gone') continue;
      await rm(path.join(this.directory, entry), { recursive: true, force: true });
    }
    await this.writeVersionFileIfMissing();
    await this.moveStaged('signature', signal);
    await this.moveStaged('top-level-manifest', signal);
    this.committed = true;
    if (this.options.durable) await syncDirectory(this.directory);
  }

  /** Restores the version file if something removed it since opening (it marks the directory as ours). */
  private async writeVersionFileIfMissing(): Promise<void> {
    try {
      await lstat(path.join(this.directory, versionFileName));
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
      await writeVersionFile(this.directory, this.options.fileMode);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await rm(this.stagingDirectory, { recursive: true, force: true });
    if (this.committed) return;
    if (this.createdVersionFile) {
      const hasImage = await lstat(path.join(this.directory, topLevelManifestFileName)).then(
        () => true,
        () => false,
      );
      if (!hasImage) await rm(path.join(this.directory, versionFileName), { force: true });
    }
    for (const directory of this.createdDirectories) {
      try {
        await rmdir(directory);
      } catch {
        break; // Not empty (someone else wrote there) or gone: keep it and its parents.
      }
    }
  }
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function writeVersionFile(directory: string, fileMode: number): Promise<void> {
  const handle = await open(path.join(directory, versionFileName), 'wx', fileMode);
  try {
    await handle.writeFile(dirTransportVersion);
    await handle.chmod(fileMode);
  } finally {
    await handle.close();
  }
}

/**
 * Whether `directory` has the version file, waiting a moment for a writer that created it to fill it
 * (it is created empty, then written).
 */
async function hasVersionFile(directory: string): Promise<boolean> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const content = await readFile(path.join(directory, versionFileName), 'utf8').catch(() => undefined);
    if (content === dirTransportVersion) return true;
    if (content !== '' && content !== undefined && !dirTransportVersion.startsWith(content)) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return false;
}

/**
 * Creates `directory` and its missing parents; returns the directories created, deepest first. Errors
 * are the system's own (EROFS on a read-only file system, not Node's recursive mkdir's ENOENT).
 */
async function createDirectories(directory: string, mode: number): Promise<string[]> {
  return (await makeDirectories(path.resolve(directory), mode)).reverse();
}

/**
 * Opens a `dir:` image for writing (see `DirImageDestination` for the rules). Rejects with
 * `ERR_GANTRY_INVALID_LAYOUT` when the path exists and is not a directory, or is a non-empty directory
 * without the transport's `version` file, and with `ERR_GANTRY_NOT_SUPPORTED` when both
 * `transportOptions.dir.forceCompress` and `forceDecompress` are set.
 */
export async function openDirImageDestination(
  reference: DirImageReference,
  context: TransportContext,
): Promise<ImageDestination> {
  throwIfAborted(context.signal);
  const { forceCompress, forceDecompress } = dirContextOptions(context);
  if (forceCompress && forceDecompress) {
    throw new GantryError(ErrorCodes.NotSupported, 'Cannot compress and decompress at the same time');
  }
  const desiredLayerCompression = forceCompress ? 'compress' : forceDecompress ? 'decompress' : 'preserve';
  const directory = reference.path === '' ? '.' : reference.path;
  const { fileMode, directoryMode } = reference.options;
  let createdDirectories: string[] = [];
  let createdVersionFile = false;
  try {
    let entries: string[] | undefined;
    try {
      const directoryStat = await stat(directory);
      if (!directoryStat.isDirectory()) {
        throw new GantryError(
          ErrorCodes.InvalidLayout,
          `${reference}: ${directory} exists and is not a directory`,
        );
      }
      entries = await readdir(directory);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
      createdDirectories = await createDirectories(directory, directoryMode);
    }
    if (entries !== undefined && entries.length > 0) {
      let version: string | undefined;
      try {
        version = await readFile(path.join(directory, versionFileName), 'utf8');
      } catch (error) {
        if (errorCode(error) !== 'ENOENT') throw error;
      }
      // A writer that created the directory at the same moment may still be filling its version file
      // (created empty, then written): wait for it rather than refuse a directory that is becoming an image.
      const beingWritten =
        version !== undefined && version !== dirTransportVersion && dirTransportVersion.startsWith(version);
      if (version !== dirTransportVersion && !(beingWritten && (await hasVersionFile(directory)))) {
        throw new GantryError(
          ErrorCodes.InvalidLayout,
          `${reference}: refusing to overwrite ${directory}: not a containers image directory, don't want to overwrite important data`,
        );
      }
    } else {
      try {
        await writeVersionFile(directory, fileMode);
        createdVersionFile = true;
      } catch (error) {
        // Another writer opened the new directory at the same time and wrote it first.
        if (errorCode(error) !== 'EEXIST') throw error;
        if (!(await hasVersionFile(directory))) {
          throw new GantryError(
            ErrorCodes.InvalidLayout,
            `${reference}: refusing to overwrite ${directory}: not a containers image directory, don't want to overwrite important data`,
          );
        }
      }
    }
    // Staging directories of writers that died (kill -9) go now; a live writer's stay.
    await removeAbandonedTemporaryFiles(directory);
    const stagingDirectory = path.join(directory, ownedTemporaryName('staging'));
    await mkdir(stagingDirectory, { mode: 0o700 });
    return new DirImageDestination({
      reference,
      context,
      desiredLayerCompression,
      directory,
      stagingDirectory,
      createdVersionFile,
      createdDirectories,
    });
  } catch (error) {
    // Leave the file system as it was.
    if (createdVersionFile) await rm(path.join(directory, versionFileName), { force: true });
    for (const created of createdDirectories) await rmdir(created).catch(() => {});
    throw toGantryError(error, context.signal, `${reference}: opening for writing`);
  }
}
