/**
 * An OCI archive open for reading, without extracting it: `@gantry/tar-archive` indexes the tar headers
 * once (refusing hostile archives: `..` or absolute names, links pointing outside, duplicate entries,
 * truncated data), then `index.json` and `oci-layout` are read and every blob is streamed from its
 * offset in the archive.
 *
 * Entry names are normalised (`./index.json` is `index.json`), as containers/image sees them after
 * extracting. Blob entries are `blobs/<alg>/<hex>` with a known algorithm and a valid encoding; links
 * between entries are followed inside the archive.
 */
import { type FileHandle, open, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  abortError,
  type Digest,
  digestAlgorithm,
  digestOf,
  ErrorCodes,
  GantryError,
  isGantryError,
  throwIfAborted,
} from '@gantry/core/transport';
import {
  blobEntryName,
  checkLayoutFile,
  describeFileSystemError,
  errorCode,
  indexFileName,
  type LayoutIndex,
  layoutError,
  layoutFileName,
  maximumIndexSize,
  maximumLayoutFileSize,
  maximumManifestSize,
  parseIndex,
} from '@gantry/oci-layout-format';
import { openTarArchive, type TarArchiveReader, type TarEntry } from '@gantry/tar-archive';

/** An OCI archive open for reading. */
export interface OciArchiveContents {
  /** The archive's path. */
  readonly path: string;
  /** Its `index.json`. */
  readonly index: LayoutIndex;
  /** The size of blob `digest` in the archive, or undefined when it has none. */
  blobSize(digest: Digest): number | undefined;
  /**
   * A manifest's bytes, or undefined when the archive has no such blob. Throws
   * `ERR_GANTRY_INVALID_LAYOUT` when it is larger than 4 MiB or its bytes do not have its digest.
   */
  readManifest(
    digest: Digest,
    options?: { signal?: AbortSignal | undefined },
  ): Promise<Uint8Array | undefined>;
  /** Streams blob `digest` from its offset; `ERR_GANTRY_BLOB_NOT_FOUND` when absent. */
  openBlob(digest: Digest, options?: { signal?: AbortSignal | undefined }): Readable;
  /** Releases the file. Idempotent. */
  close(): Promise<void>;
}

/** Options of `openOciArchive`. */
export interface OpenOciArchiveOptions {
  signal?: AbortSignal | undefined;
  /** Where a non-seekable input (a pipe) is spooled before indexing. */
  temporaryDirectory?: string | undefined;
}

/** Chunk size of blob streams. */
const readChunkSize = 256 * 1024;

/**
 * A stream of `length` bytes of `handle` from `start`, by positional reads. Destroying it never closes
 * the handle (unlike `FileHandle.createReadStream`, whose destroy closes the handle even with
 * `autoClose: false`), so any number of streams can share one handle.
 */
function rangeStream(
  handle: FileHandle,
  start: number,
  length: number,
  description: string,
  signal?: AbortSignal,
) {
  let position = start;
  const end = start + length;
  const stream = new Readable({
    highWaterMark: readChunkSize,
    read() {
      if (position >= end) {
        this.push(null);
        return;
      }
      const buffer = Buffer.allocUnsafe(Math.min(readChunkSize, end - position));
      handle.read(buffer, 0, buffer.byteLength, position).then(
        ({ bytesRead }) => {
          if (bytesRead === 0) {
            this.destroy(
              layoutError(`${description} ends early: the archive was truncated while being read`),
            );
            return;
          }
          position += bytesRead;
          this.push(buffer.subarray(0, bytesRead));
          if (position >= end) this.push(null);
        },
        (error: unknown) => this.destroy(error as Error),
      );
    },
  });
  if (signal) {
    if (signal.aborted) stream.destroy(abortError(signal));
    const onAbort = () => stream.destroy(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    stream.once('close', () => signal.removeEventListener('abort', onAbort));
  }
  return stream;
}

async function readRange(
  handle: FileHandle,
  start: number,
  length: number,
  description: string,
): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, start + done);
    if (bytesRead === 0)
      throw layoutError(`${description} ends early: the archive was truncated while being read`);
    done += bytesRead;
  }
  return buffer;
}

class OpenedOciArchive implements OciArchiveContents {
  readonly path: string;
  readonly index: LayoutIndex;
  readonly #tar: TarArchiveReader;
  readonly #handle: FileHandle;
  #closed = false;

  constructor(archivePath: string, tar: TarArchiveReader, handle: FileHandle, index: LayoutIndex) {
    this.path = archivePath;
    this.#tar = tar;
    this.#handle = handle;
    this.index = index;
  }

  #blobEntry(digest: Digest): TarEntry | undefined {
    return this.#tar.resolveFile(blobEntryName(digest));
  }

  blobSize(digest: Digest): number | undefined {
    return this.#blobEntry(digest)?.size;
  }

  async readManifest(
    digest: Digest,
    options: { signal?: AbortSignal | undefined } = {},
  ): Promise<Uint8Array | undefined> {
    throwIfAborted(options.signal);
    const entry = this.#blobEntry(digest);
    if (!entry) return undefined;
    if (entry.size > maximumManifestSize) {
      throw layoutError(
        `manifest ${digest} in OCI archive ${this.path} is too large (${entry.size} bytes, at most ${maximumManifestSize} accepted)`,
      );
    }
    const bytes = await readRange(
      this.#handle,
      entry.dataOffset,
      entry.size,
      `manifest ${digest} in ${this.path}`,
    );
    const actual = digestOf(bytes, digestAlgorithm(digest));
    if (actual !== digest) {
      throw layoutError(
        `manifest ${digest} in OCI archive ${this.path} has digest ${actual}: the archive is corrupt`,
      );
    }
    return new Uint8Array(bytes);
  }

  openBlob(digest: Digest, options: { signal?: AbortSignal | undefined } = {}): Readable {
    const entry = this.#blobEntry(digest);
    if (!entry)
      throw new GantryError(ErrorCodes.BlobNotFound, `blob ${digest} not found in OCI archive ${this.path}`);
    return rangeStream(
      this.#handle,
      entry.dataOffset,
      entry.size,
      `blob ${digest} in ${this.path}`,
      options.signal,
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([this.#handle.close(), this.#tar.close()]);
  }
}

/**
 * Opens and indexes the OCI archive at `archivePath`. A compressed archive (`x.tar.gz`; also zstd,
 * bzip2, xz, recognised by their first bytes, as skopeo reads them) is decompressed once into a spool
 * file (tar-archive's `openTarArchive`), which blobs are then read from. Rejects with:
 * - `ERR_GANTRY_IMAGE_NOT_FOUND` when the file does not exist (the system's error, `stat /x.tar: no such file or directory`);
 * - `ERR_GANTRY_INVALID_LAYOUT` naming the problem for hostile or malformed tars, archives without
 *   `index.json`, an `index.json` or `oci-layout` that is not valid, or that is not a regular file.
 */
export async function openOciArchive(
  archivePath: string,
  options: OpenOciArchiveOptions = {},
): Promise<OciArchiveContents> {
  throwIfAborted(options.signal);
  // Blobs are read through a handle of this module's own (see rangeStream), opened before indexing so
  // that it is the file indexed (checked below by inode and size).
  let handle: FileHandle | undefined;
  try {
    // A pipe or device is not opened here (opening and closing a FIFO would consume its writer):
    // tar-archive spools it to a private file, opened after indexing.
    const stats = await stat(archivePath);
    if (stats.isDirectory()) {
      throw layoutError(
        `${archivePath} is a directory, not an OCI archive (use oci:${archivePath} for an OCI layout)`,
      );
    }
    if (stats.isFile()) handle = await open(archivePath, 'r');
  } catch (error) {
    if (isGantryError(error)) throw error;
    if (errorCode(error) === 'ENOENT') {
      throw new GantryError(ErrorCodes.ImageNotFound, describeFileSystemError(error), { cause: error });
    }
    throw layoutError(`reading OCI archive ${archivePath}: ${describeFileSystemError(error)}`, error);
  }
  let tar: TarArchiveReader;
  try {
    tar = await openTarArchive(archivePath, {
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.temporaryDirectory ? { temporaryDirectory: options.temporaryDirectory } : {}),
    });
  } catch (error) {
    await handle?.close();
    if (errorCode(error) === 'ENOENT') {
      throw new GantryError(ErrorCodes.ImageNotFound, describeFileSystemError(error), { cause: error });
    }
    if (isGantryError(error)) {
      if (error.code === ErrorCodes.InvalidLayout) {
        throw layoutError(`OCI archive ${archivePath} is not a valid tar archive: ${error.message}`, error);
      }
      throw error;
    }
    throw layoutError(`reading OCI archive ${archivePath}: ${describeFileSystemError(error)}`, error);
  }
  try {
    if (handle && tar.path !== archivePath) {
      // Compressed: tar-archive decompressed it into a spool file, which blobs are read from.
      await handle.close();
      handle = await open(tar.path, 'r');
    } else if (handle) {
      const [opened, current] = await Promise.all([handle.stat(), stat(archivePath)]);
      if (opened.ino !== current.ino || opened.dev !== current.dev || opened.size !== tar.size) {
        // Another writer renamed a new archive over it: the next attempt reads that one.
        throw new GantryError(
          ErrorCodes.Transient,
          `OCI archive ${archivePath} changed while it was being opened (another process replaced it); try again`,
          { retryable: true },
        );
      }
    } else {
      handle = await open(tar.path, 'r');
    }
    const readSmall = async (name: string, limit: number): Promise<Buffer | undefined> => {
      if (!tar.get(name)) return undefined;
      const entry = tar.resolveFile(name);
      if (!entry) return undefined;
      if (entry.size > limit) {
        throw layoutError(
          `${name} of OCI archive ${archivePath} is too large (${entry.size} bytes, at most ${limit} accepted)`,
        );
      }
      return readRange(handle as FileHandle, entry.dataOffset, entry.size, `${name} in ${archivePath}`);
    };
    const indexBytes = await readSmall(indexFileName, maximumIndexSize);
    if (indexBytes === undefined) {
      throw layoutError(`${archivePath} is not an OCI archive: it has no ${indexFileName}`);
    }
    const index = parseIndex(indexBytes, `${indexFileName} of OCI archive ${archivePath}`);
    const layoutBytes = await readSmall(layoutFileName, maximumLayoutFileSize);
    // containers/image reads layouts without oci-layout; when present it must be a version Gantry knows.
    if (layoutBytes !== undefined)
      checkLayoutFile(layoutBytes, `${layoutFileName} of OCI archive ${archivePath}`);
    return new OpenedOciArchive(archivePath, tar, handle, index);
  } catch (error) {
    await Promise.allSettled([handle?.close(), tar.close()]);
    throw error;
  }
}
