/**
 * Writing an image as a `docker save` archive, streamed while the copy runs (the destination itself is
 * `@gantry/docker-save-format`'s `DockerArchiveImageDestinationBase`; this module says where the archive goes).
 *
 * - The target may be a new path or an empty regular file: the archive is written to a temporary file next
 *   to it (named by `ownedTemporaryName`, labelled with the target's file name) and renamed over it on
 *   `commit()`, so a failed or abandoned copy leaves nothing behind; the temporary archives of writers
 *   that died (kill -9) are removed when the next destination for the same target is opened. Being a regular file, every layer is streamed straight into it (the header of a
 *   layer of unknown size is written when its data has ended). A non-empty regular file is refused (as
 *   containers/image: docker-archive does not modify existing archives). Anything else that can be opened
 *   for writing (a FIFO, `/dev/stdout`, a character device) is written directly, without size checks,
 *   layers of unknown size being spooled to temporary files first; a failed copy then leaves a truncated
 *   stream, which readers reject.
 * - Writers to one target path take turns: a destination writing a regular file holds the path's lock
 *   (`lockPath`, a lock file `.<name>.gantry-lock` beside the target) from before the target is checked
 *   to its commit or close. So of several processes writing one path at once, one writes the archive and
 *   the others, once it has committed, refuse the non-empty file: no finished copy is replaced by
 *   another.
 * - Layers must be uncompressed (`desiredLayerCompression: 'decompress'`); only Docker schema2 manifests
 *   are accepted (the pipeline converts); no signatures, no manifest lists; `putBlob` may run concurrently.
 * - Tags: the reference's tag, plus `transportOptions['docker-archive'].additionalTags` (`--additional-tag`).
 */
import { constants } from 'node:fs';
import { type FileHandle, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import {
  type DockerReference,
  describeFileSystemError,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  lockPath,
  ownedTemporaryName,
  type PathLock,
  removeAbandonedTemporaryFiles,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core/transport';
import {
  DockerArchiveImageDestinationBase,
  type DockerArchiveOutput,
  parseRepoTag,
} from '@gantry/docker-save-format';
import type { DockerArchiveReference } from './reference.js';

/** Options read from `TransportContext.transportOptions['docker-archive']`. */
export interface DockerArchiveTransportOptions {
  /** More tags to record for the image (`--additional-tag`), e.g. `busybox:1.36`. */
  additionalTags?: string[];
}

/** Parses `additionalTags` like containers/image does for `--additional-tag`. */
export function parseAdditionalTags(context: TransportContext): DockerReference[] {
  const options = context.transportOptions?.['docker-archive'] as DockerArchiveTransportOptions | undefined;
  return (options?.additionalTags ?? []).map((text) => {
    try {
      return parseRepoTag(text);
    } catch (error) {
      throw new GantryError(
        ErrorCodes.InvalidReference,
        `invalid additional tag "${text}": ${(error as Error).message}`,
        { cause: error },
      );
    }
  });
}

class DockerArchiveImageDestination extends DockerArchiveImageDestinationBase<DockerArchiveReference> {
  /** The temporary file renamed over the target on commit; undefined when writing to a pipe or device. */
  readonly #temporaryPath: string | undefined;
  readonly #lock: PathLock | undefined;

  constructor(
    reference: DockerArchiveReference,
    output: DockerArchiveOutput,
    temporaryPath: string | undefined,
    lock: PathLock | undefined,
    repoTags: DockerReference[],
    context: TransportContext,
  ) {
    super(reference, {
      output,
      repoTags,
      mustMatchRuntimeOS: false,
      storageDescription: 'docker tar files',
      context,
    });
    this.#temporaryPath = temporaryPath;
    this.#lock = lock;
  }

  protected override async completeArchive(): Promise<void> {
    if (this.#temporaryPath) await rename(this.#temporaryPath, this.reference.path);
  }

  protected override async discardArchive(): Promise<void> {
    try {
      if (this.#temporaryPath) await rm(this.#temporaryPath, { force: true });
    } finally {
      await this.#lock?.release();
    }
  }

  protected override async releaseArchive(): Promise<void> {
    await this.#lock?.release();
  }
}

/** A file-system error opening the destination, worded as Go's (`open /ro/x: read-only file system`). */
function fileSystemFailure(target: string, error: unknown): GantryError {
  return new GantryError(
    ErrorCodes.Internal,
    `opening docker archive ${target} for writing: ${describeFileSystemError(error)}`,
    { cause: error },
  );
}

/**
 * Opens a destination writing the archive `reference.path` (see the module comment for the rules).
 * `ERR_GANTRY_INVALID_REFERENCE` for an `@N` reference or a bad additional tag; `ERR_GANTRY_NOT_SUPPORTED`
 * for a non-empty existing regular file or a directory.
 */
export async function openDockerArchiveImageDestination(
  reference: DockerArchiveReference,
  context: TransportContext,
): Promise<ImageDestination> {
  throwIfAborted(context.signal);
  if (reference.sourceIndex !== -1) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Destination reference must not contain a manifest index @${reference.sourceIndex}`,
    );
  }
  const repoTags = [...(reference.tag ? [reference.tag] : []), ...parseAdditionalTags(context)];
  const target = reference.path;
  let lock: PathLock | undefined;
  if (!(await isPipeOrDevice(target))) {
    try {
      lock = await lockPath(target, context.signal ? { signal: context.signal } : {});
    } catch (error) {
      if (error instanceof GantryError) throw error;
      throw fileSystemFailure(target, error);
    }
  }
  try {
    return await openLocked(reference, context, repoTags, lock);
  } catch (error) {
    await lock?.release().catch(() => undefined);
    throw error;
  }
}

/** True when `target` exists and is neither a regular file nor a directory (a FIFO, a device). */
async function isPipeOrDevice(target: string): Promise<boolean> {
  try {
    const information = await stat(target);
    return !information.isFile() && !information.isDirectory();
  } catch {
    return false;
  }
}

async function openLocked(
  reference: DockerArchiveReference,
  context: TransportContext,
  repoTags: DockerReference[],
  lock: PathLock | undefined,
): Promise<ImageDestination> {
  const target = reference.path;
  let existing: Awaited<ReturnType<typeof stat>> | undefined;
  try {
    existing = await stat(target);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw fileSystemFailure(target, error);
  }
  if (existing?.isDirectory()) {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `docker-archive: ${target} is a directory, not an archive file`,
    );
  }
  if (existing?.isFile() && existing.size !== 0) {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `docker-archive doesn't support modifying existing images: ${target} exists and is not empty`,
    );
  }
  if (existing && !existing.isFile()) {
    // A pipe or device: stream straight into it.
    const handle = await open(target, constants.O_WRONLY).catch((error: unknown) => {
      throw fileSystemFailure(target, error);
    });
    const output = handle.createWriteStream();
    return new DockerArchiveImageDestination(
      reference,
      output as unknown as Writable,
      undefined,
      lock,
      repoTags,
      context,
    );
  }
  // Temporary archives for this destination left by writers that died (kill -9) go now; a live
  // writer's stay.
  await removeAbandonedTemporaryFiles(path.dirname(target), { label: path.basename(target) });
  const temporaryPath = path.join(path.dirname(target), ownedTemporaryName(path.basename(target)));
  const handle: FileHandle = await open(temporaryPath, 'wx', 0o644).catch((error: unknown) => {
    throw fileSystemFailure(target, error);
  });
  try {
    return new DockerArchiveImageDestination(reference, handle, temporaryPath, lock, repoTags, context);
  } catch (error) {
    await handle.close();
    await rm(temporaryPath, { force: true });
    throw error;
  }
}
