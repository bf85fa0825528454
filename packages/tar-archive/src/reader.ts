/**
 * Random-access reading of a tar archive: the headers are read once (one 512-byte block per header, data
 * skipped by seeking) into an index, and each entry's bytes are then streamed from its offset.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { type FileHandle, open, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Duplex, Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  abortError,
  compressorInputBuffers,
  ErrorCodes,
  ExpansionGuard,
  GantryError,
  makeOwnedTemporaryDirectory,
  throwIfAborted,
} from '@gantry/core/transport';
import {
  type ArchiveCompression,
  compressionMagicLength,
  createArchiveDecompressor,
  detectArchiveCompression,
} from './compression.js';
import {
  blockSize,
  decodeHeader,
  decodeLongName,
  isZeroBlock,
  parsePaxRecords,
  type RawHeader,
} from './headers.js';
import { normalizeEntryName, resolveHardlinkTarget, resolveSymlinkTarget } from './names.js';

/** The kind of a tar entry. */
export type TarEntryType =
  | 'file'
  | 'directory'
  | 'symlink'
  | 'hardlink'
  | 'character-device'
  | 'block-device'
  | 'fifo'
  | 'other';

/** One entry of the index. */
export interface TarEntry {
  /** The normalised name (see `normalizeEntryName`): no `./`, no trailing `/`; the root is `.`. */
  readonly name: string;
  /** The name as stored (after PAX / GNU long-name extensions). */
  readonly storedName: string;
  readonly type: TarEntryType;
  /** Bytes of data the entry carries (0 for every type but `file` and `other`). */
  readonly size: number;
  /** Offset of the entry's header block (the first of its extended headers, if any) in the archive. */
  readonly headerOffset: number;
  /** Offset of the entry's first data byte in the archive. */
  readonly dataOffset: number;
  /** For links: the target as stored. */
  readonly linkName?: string;
  /**
   * For links: the normalised name of the entry the link points to (symbolic links resolved relative to
   * their directory, hard links relative to the root).
   */
  readonly linkTarget?: string;
  /** Permission bits and the set-id/sticky bits (`mode & 0o7777`). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Modification time in seconds since the epoch. */
  readonly mtime: number;
}

/** Default limit of `readEntryBytes`: 16 MiB, more than any sane manifest or config. */
export const defaultMetadataSizeLimit = 16 * 1024 * 1024;

/** Limit on the size of one PAX or GNU long-name extended header. */
const extendedHeaderSizeLimit = 1024 * 1024;

/** Options of `openTarArchive` and `openTarArchiveFromStream`. */
export interface OpenTarArchiveOptions {
  signal?: AbortSignal;
  /**
   * Directory for the spool file made when the archive is not a seekable regular file (a pipe, stdin, a
   * character device); defaults to the OS temporary directory.
   */
  temporaryDirectory?: string;
}

/** Options of `TarArchiveReader.readEntryBytes`. */
export interface ReadEntryOptions {
  signal?: AbortSignal;
  /** Refuse entries larger than this many bytes (default `defaultMetadataSizeLimit`). */
  maxSize?: number;
}

function invalidLayout(message: string): GantryError {
  return new GantryError(ErrorCodes.InvalidLayout, message);
}

function entryTypeFor(typeflag: string): TarEntryType | undefined {
  switch (typeflag) {
    case '0':
    case '7':
      return 'file';
    case '1':
      return 'hardlink';
    case '2':
      return 'symlink';
    case '3':
      return 'character-device';
    case '4':
      return 'block-device';
    case '5':
      return 'directory';
    case '6':
      return 'fifo';
    default:
      return undefined;
  }
}

/** Types whose header size field does not describe data that follows (as Go's archive/tar treats them). */
const headerOnlyTypes: ReadonlySet<TarEntryType> = new Set([
  'hardlink',
  'symlink',
  'character-device',
  'block-device',
  'directory',
  'fifo',
]);

function roundUpToBlock(size: number): number {
  return Math.ceil(size / blockSize) * blockSize;
}

/** Bytes read at once while indexing (see `indexArchive`). */
const indexReadAhead = 64 * 1024;

async function readExactlyAt(
  handle: FileHandle,
  length: number,
  position: number,
  fileSize: number,
  what: string,
): Promise<Buffer> {
  if (position + length > fileSize) {
    throw invalidLayout(
      `truncated tar archive: ${what} at offset ${position} needs ${length} bytes, the archive ends at ${fileSize}`,
    );
  }
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0)
      throw invalidLayout(`truncated tar archive: ${what} at offset ${position} ends early`);
    done += bytesRead;
  }
  return buffer;
}

/**
 * Reads every header of the archive open as `handle` (of `fileSize` bytes), applying PAX (`x`, `g`) and GNU
 * long name/link (`L`, `K`) extensions, and checks the archive is safe to read. Throws
 * `ERR_GANTRY_INVALID_LAYOUT` naming the entry for: names that are absolute or contain `..`; symbolic or hard
 * links pointing outside the archive, hard links to entries that do not precede them; two entries with the
 * same normalised name (except two directories); headers or data beyond the end of the file; bad header
 * checksums; sparse and multi-volume entries (unsupported).
 */
async function indexArchive(
  handle: FileHandle,
  fileSize: number,
  description: string,
  signal: AbortSignal | undefined,
): Promise<TarEntry[]> {
  // Headers and extended header data are read through a window of `indexReadAhead` bytes: the headers of
  // small entries (configs, legacy layer directories, manifest.json) come many to a read.
  let window: Buffer = Buffer.alloc(0);
  let windowOffset = 0;
  const read = async (length: number, position: number, what: string): Promise<Buffer> => {
    if (position >= windowOffset && position + length <= windowOffset + window.length) {
      return window.subarray(position - windowOffset, position - windowOffset + length);
    }
    if (position + length > fileSize) return readExactlyAt(handle, length, position, fileSize, what);
    const span = Math.max(length, Math.min(indexReadAhead, fileSize - position));
    window = await readExactlyAt(handle, span, position, fileSize, what);
    windowOffset = position;
    return window.subarray(0, length);
  };
  const entries: TarEntry[] = [];
  const byName = new Map<string, TarEntry>();
  let globalPax = new Map<string, string>();
  let localPax: Map<string, string> | undefined;
  let longName: string | undefined;
  let longLinkName: string | undefined;
  let pendingHeaderOffset: number | undefined;
  let offset = 0;
  let count = 0;
  for (;;) {
    if ((++count & 0xff) === 0) throwIfAborted(signal);
    if (offset === fileSize) {
      // No end-of-archive blocks; like Go's archive/tar, accept when the last entry is complete.
      if (localPax || longName !== undefined || longLinkName !== undefined) {
        throw invalidLayout(
          `truncated tar archive ${description}: extended header without its entry at the end`,
        );
      }
      break;
    }
    const block = await read(blockSize, offset, 'header');
    if (isZeroBlock(block)) break;
    const header: RawHeader = decodeHeader(block, offset);
    const headerOffset = pendingHeaderOffset ?? offset;
    const dataOffset = offset + blockSize;
    const readExtendedData = async (kind: string): Promise<Buffer> => {
      if (header.size > extendedHeaderSizeLimit) {
        throw invalidLayout(
          `tar ${kind} header at offset ${offset} is ${header.size} bytes, more than the ${extendedHeaderSizeLimit}-byte limit`,
        );
      }
      return read(header.size, dataOffset, `${kind} header data`);
    };
    const extendedHeader = async (apply: (data: Buffer) => void, kind: string, global = false) => {
      apply(await readExtendedData(kind));
      if (!global) pendingHeaderOffset = headerOffset;
      offset = dataOffset + roundUpToBlock(header.size);
    };
    switch (header.typeflag) {
      case 'x':
        await extendedHeader((data) => {
          localPax = parsePaxRecords(data, offset);
        }, 'PAX');
        continue;
      case 'g':
        await extendedHeader(
          (data) => {
            globalPax = new Map([...globalPax, ...parsePaxRecords(data, offset)]);
          },
          'PAX global',
          true,
        );
        continue;
      case 'L':
        await extendedHeader((data) => {
          longName = decodeLongName(data);
        }, 'GNU long name');
        continue;
      case 'K':
        await extendedHeader((data) => {
          longLinkName = decodeLongName(data);
        }, 'GNU long link name');
        continue;
      default:
        break;
    }
    const pax = new Map([...globalPax, ...(localPax ?? [])]);
    const storedName = pax.get('path') ?? longName ?? header.name;
    const linkName = pax.get('linkpath') ?? longLinkName ?? header.linkName;
    localPax = undefined;
    longName = undefined;
    longLinkName = undefined;
    pendingHeaderOffset = undefined;

    if (header.typeflag === 'S' || [...pax.keys()].some((key) => key.startsWith('GNU.sparse.'))) {
      throw invalidLayout(`tar entry "${storedName}" in ${description}: sparse files are not supported`);
    }
    if (header.typeflag === 'M') {
      throw invalidLayout(
        `tar entry "${storedName}" in ${description}: multi-volume archives are not supported`,
      );
    }
    let size = header.size;
    const paxSize = pax.get('size');
    if (paxSize !== undefined) {
      if (!/^\d+$/.test(paxSize) || !Number.isSafeInteger(Number(paxSize))) {
        throw invalidLayout(`tar entry "${storedName}" in ${description}: invalid PAX size "${paxSize}"`);
      }
      size = Number(paxSize);
    }
    const type = entryTypeFor(header.typeflag) ?? 'other';
    if (headerOnlyTypes.has(type)) size = 0;
    if (header.typeflag === 'V') {
      // A GNU volume label: not an entry.
      offset = dataOffset + roundUpToBlock(size);
      continue;
    }
    const name = normalizeEntryName(storedName);
    const dataEnd = dataOffset + roundUpToBlock(size);
    if (dataOffset + size > fileSize || dataEnd > fileSize) {
      throw invalidLayout(
        `truncated tar archive ${description}: entry "${storedName}" has ${size} bytes of data at offset ${dataOffset}, the archive ends at ${fileSize}`,
      );
    }
    let linkTarget: string | undefined;
    if (type === 'symlink') linkTarget = resolveSymlinkTarget(name, linkName);
    if (type === 'hardlink') {
      linkTarget = resolveHardlinkTarget(name, linkName);
      if (!byName.has(linkTarget)) {
        throw invalidLayout(
          `invalid tar entry "${storedName}" in ${description}: hard link to "${linkName}", which is not an earlier entry`,
        );
      }
    }
    const entry: TarEntry = {
      name,
      storedName,
      type,
      size,
      headerOffset,
      dataOffset,
      ...(type === 'symlink' || type === 'hardlink' ? { linkName, linkTarget } : {}),
      mode: header.mode & 0o7777,
      uid: header.uid,
      gid: header.gid,
      mtime: header.mtime,
    };
    const previous = byName.get(name);
    if (previous) {
      if (!(previous.type === 'directory' && type === 'directory')) {
        throw invalidLayout(
          `invalid tar entry "${storedName}" in ${description}: duplicate entry (also at offset ${previous.headerOffset})`,
        );
      }
    } else {
      byName.set(name, entry);
      entries.push(entry);
    }
    offset = dataEnd;
  }
  return entries;
}

/**
 * An indexed tar archive open for reading. Obtain one with `openTarArchive` or `openTarArchiveFromStream`.
 * Entries are looked up by normalised name (`normalizeEntryName`; `./a//b/` finds `a/b`). Streams returned
 * by `openEntry` read the archive at the entry's offset and may be used concurrently. `close()` releases the
 * file (and removes the spool file of a non-seekable input); streams still open then fail.
 */
export class TarArchiveReader {
  /** The archive's path (the spool file's when read from a stream). */
  readonly path: string;
  /** Size of the archive in bytes. */
  readonly size: number;
  /** Every entry, in archive order (a repeated directory appears once). */
  readonly entries: readonly TarEntry[];
  readonly #handle: FileHandle;
  readonly #byName: Map<string, TarEntry>;
  readonly #description: string;
  readonly #cleanup: (() => Promise<void>) | undefined;
  #closed = false;

  /** @internal Use `openTarArchive`. */
  constructor(init: {
    path: string;
    description: string;
    size: number;
    handle: FileHandle;
    entries: TarEntry[];
    cleanup?: () => Promise<void>;
  }) {
    this.path = init.path;
    this.size = init.size;
    this.entries = init.entries;
    this.#handle = init.handle;
    this.#description = init.description;
    this.#cleanup = init.cleanup;
    this.#byName = new Map(init.entries.map((entry) => [entry.name, entry]));
  }

  /** The entry with this name (any spelling `normalizeEntryName` accepts), or undefined. Links are not followed. */
  get(name: string): TarEntry | undefined {
    let normalized: string;
    try {
      normalized = normalizeEntryName(name);
    } catch {
      return undefined;
    }
    return this.#byName.get(normalized);
  }

  /** True when an entry has this name. */
  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /**
   * The regular-file entry `name` refers to, following symbolic and hard links inside the archive (at most
   * 40 hops). Undefined when there is no such entry; throws `ERR_GANTRY_INVALID_LAYOUT` when the name (or a
   * link's target) is not a regular file, or links loop.
   */
  resolveFile(name: string): TarEntry | undefined {
    let entry = this.get(name);
    if (!entry) return undefined;
    for (let hops = 0; hops <= 40; hops++) {
      if (entry.type === 'file') return entry;
      if (entry.type !== 'symlink' && entry.type !== 'hardlink') {
        throw invalidLayout(
          `tar entry "${entry.storedName}" in ${this.#description} is a ${entry.type}, not a file`,
        );
      }
      const target: TarEntry | undefined = this.#byName.get(entry.linkTarget!);
      if (!target) return undefined;
      entry = target;
    }
    throw invalidLayout(`tar entry "${name}" in ${this.#description}: too many levels of links`);
  }

  #requireFile(name: string): TarEntry {
    if (this.#closed)
      throw new GantryError(ErrorCodes.Internal, `tar archive ${this.#description} is closed`);
    const entry = this.resolveFile(name);
    if (!entry) {
      throw new GantryError(
        ErrorCodes.BlobNotFound,
        `tar archive ${this.#description} has no file "${name}"`,
      );
    }
    return entry;
  }

  /**
   * Streams the bytes of the file `name` (links followed, see `resolveFile`) from the archive. Rejects with
   * `ERR_GANTRY_BLOB_NOT_FOUND` when there is no such file. The stream errors with `ERR_GANTRY_ABORTED` when
   * `signal` fires.
   */
  openEntry(
    name: string,
    options: { signal?: AbortSignal } = {},
  ): { stream: Readable; size: number; entry: TarEntry } {
    throwIfAborted(options.signal);
    const entry = this.#requireFile(name);
    let stream: Readable;
    if (entry.size === 0) {
      stream = Readable.from([]);
    } else {
      stream = positionalReadStream(this.#handle, entry.dataOffset, entry.size);
    }
    const signal = options.signal;
    if (signal) {
      const onAbort = () => stream.destroy(abortError(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return { stream, size: entry.size, entry };
  }

  /**
   * Reads the whole file `name` (links followed) into memory: for small metadata files (manifests, configs,
   * `index.json`). Throws `ERR_GANTRY_INVALID_LAYOUT` naming the entry when it is larger than
   * `options.maxSize` (default 16 MiB), `ERR_GANTRY_BLOB_NOT_FOUND` when absent.
   */
  async readEntryBytes(name: string, options: ReadEntryOptions = {}): Promise<Buffer> {
    throwIfAborted(options.signal);
    const entry = this.#requireFile(name);
    const limit = options.maxSize ?? defaultMetadataSizeLimit;
    if (entry.size > limit) {
      throw invalidLayout(
        `tar entry "${entry.storedName}" in ${this.#description} is ${entry.size} bytes, more than the ${limit}-byte limit`,
      );
    }
    return readExactlyAt(
      this.#handle,
      entry.size,
      entry.dataOffset,
      this.size,
      `entry "${entry.storedName}"`,
    );
  }

  /**
   * Reads at most `length` bytes from the start of the file `name` (links followed): for recognising
   * compression by magic numbers without streaming the entry.
   */
  async readEntryPrefix(name: string, length: number): Promise<Buffer> {
    const entry = this.#requireFile(name);
    const count = Math.min(length, entry.size);
    return readExactlyAt(this.#handle, count, entry.dataOffset, this.size, `entry "${entry.storedName}"`);
  }

  /** Closes the archive (and removes its spool file, if any). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#handle.close().catch(() => {});
    await this.#cleanup?.();
  }
}

async function openIndexed(
  filePath: string,
  description: string,
  signal: AbortSignal | undefined,
  cleanup?: () => Promise<void>,
): Promise<TarArchiveReader> {
  let handle: FileHandle;
  try {
    handle = await open(filePath, 'r');
  } catch (error) {
    await cleanup?.();
    throw error;
  }
  try {
    const { size } = await handle.stat();
    const entries = await indexArchive(handle, size, description, signal);
    return new TarArchiveReader({
      path: filePath,
      description,
      size,
      handle,
      entries,
      ...(cleanup ? { cleanup } : {}),
    });
  } catch (error) {
    await handle.close().catch(() => {});
    await cleanup?.();
    throw error;
  }
}

/**
 * Copies a non-seekable input into a spool file under `temporaryDirectory`, then indexes it. The spool
 * file is removed by `close()` (or when indexing fails). Needed because the index reads headers at
 * computed offsets and entries are later read in any order: a pipe can only be read once, front to back.
 * A compressed input (gzip, zstd, bzip2, xz: see compression.ts) is decompressed on the way, so the
 * spool file holds the tar, within core's expansion limit (`ExpansionGuard`, set by
 * `GANTRY_MAX_EXPANSION_RATIO` and `GANTRY_EXPANSION_ALLOWANCE_MIB`): a decompression bomb fails with
 * `ERR_GANTRY_INVALID_LAYOUT` naming the limit, and its spool file is removed.
 */
export async function openTarArchiveFromStream(
  input: Readable | AsyncIterable<Uint8Array>,
  options: OpenTarArchiveOptions & { description?: string } = {},
): Promise<TarArchiveReader> {
  throwIfAborted(options.signal);
  const description = options.description ?? 'from a stream';
  const spoolDirectory = await makeOwnedTemporaryDirectory(
    'tar-spool',
    options.temporaryDirectory ?? os.tmpdir(),
  );
  const cleanup = () => rm(spoolDirectory, { recursive: true, force: true });
  const spoolPath = path.join(spoolDirectory, 'archive.tar');
  try {
    const { compression, stream } = await peekCompression(input);
    const output = createWriteStream(spoolPath);
    let stages: (Readable | Writable | Duplex)[] = [stream, output];
    if (compression !== 'none') {
      const what = `archive ${description}`;
      // A decompression bomb stops at the expansion limit, and its spool file goes.
      const guard = new ExpansionGuard(what, ErrorCodes.InvalidLayout).stages();
      stages = [stream, guard.input, createArchiveDecompressor(compression, what), guard.output, output];
    }
    // biome-ignore lint/suspicious/noExplicitAny: pipeline's overloads do not take a computed list.
    const run = pipeline as (...streams: any[]) => Promise<void>;
    if (options.signal) await run(...stages, { signal: options.signal });
    else await run(...stages);
  } catch (error) {
    await cleanup();
    if (options.signal?.aborted) throw abortError(options.signal);
    throw error;
  }
  return openIndexed(spoolPath, description, options.signal, cleanup);
}

/** Reads the first bytes of `input` to recognise its compression; `stream` yields all of it again. */
async function peekCompression(
  input: Readable | AsyncIterable<Uint8Array>,
): Promise<{ compression: ArchiveCompression; stream: Readable }> {
  const iterator = input[Symbol.asyncIterator]();
  const head: Uint8Array[] = [];
  let length = 0;
  let done = false;
  while (length < compressionMagicLength) {
    const next = await iterator.next();
    if (next.done) {
      done = true;
      break;
    }
    const chunk = typeof next.value === 'string' ? Buffer.from(next.value) : next.value;
    head.push(chunk);
    length += chunk.byteLength;
  }
  const compression = detectArchiveCompression(Buffer.concat(head));
  async function* replay(): AsyncGenerator<Uint8Array> {
    yield* head;
    if (done) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return { compression, stream: Readable.from(replay(), { objectMode: false }) };
}

/**
 * Opens and indexes the tar archive at `archivePath`. An uncompressed regular file is read in place;
 * a compressed one (gzip, zstd, bzip2, xz, recognised by its first bytes, as containers/storage does)
 * is decompressed into a spool file, and anything else that can be read (a FIFO, `/dev/stdin`, a
 * character device) is first copied to a spool file (see `openTarArchiveFromStream`). `path` of the
 * reader is then the spool file's. Throws `ERR_GANTRY_INVALID_LAYOUT` for malformed or hostile
 * archives (see the index rules on `TarArchiveReader`), and the file system's error (e.g. ENOENT) when
 * it cannot be opened.
 */
export async function openTarArchive(
  archivePath: string,
  options: OpenTarArchiveOptions = {},
): Promise<TarArchiveReader> {
  throwIfAborted(options.signal);
  const information = await stat(archivePath);
  if (information.isDirectory()) {
    throw invalidLayout(`${archivePath} is a directory, not a tar archive`);
  }
  if (!information.isFile() || (await fileCompression(archivePath)) !== 'none') {
    return openTarArchiveFromStream(createReadStream(archivePath), { ...options, description: archivePath });
  }
  return openIndexed(archivePath, archivePath, options.signal);
}

/** The compression of a regular file, from its first bytes. */
async function fileCompression(filePath: string): Promise<ArchiveCompression> {
  const handle = await open(filePath, 'r');
  try {
    const prefix = Buffer.alloc(compressionMagicLength);
    const { bytesRead } = await handle.read(prefix, 0, prefix.length, 0);
    return detectArchiveCompression(prefix.subarray(0, bytesRead));
  } finally {
    await handle.close();
  }
}

/**
 * A stream of `length` bytes of `handle` from `start`, read with positional reads. Unlike
 * `FileHandle.createReadStream`, destroying it never closes the shared handle (Node closes the handle
 * on destroy even with `autoClose: false`), so one archive serves any number of entry streams.
 *
 * Whole chunks are read into buffers of core's `compressorInputBuffers`: an uncompressed layer
 * gzip-compressed by the copy has each given back once compressed and hashed, and read into again (no
 * fresh megabyte, and its page faults, per read). The last, shorter chunk of an entry is a buffer of
 * its own.
 */
function positionalReadStream(handle: FileHandle, start: number, length: number): Readable {
  let position = start;
  const end = start + length;
  // 1 MiB reads: large reads keep per-chunk overhead low on multi-GiB layers.
  const pool = compressorInputBuffers();
  return new Readable({
    highWaterMark: pool.size,
    read() {
      const wanted = Math.min(pool.size, end - position);
      if (wanted <= 0) {
        this.push(null);
        return;
      }
      const buffer = wanted === pool.size ? pool.take() : Buffer.allocUnsafe(wanted);
      handle.read(buffer, 0, wanted, position).then(
        ({ bytesRead }) => {
          if (bytesRead === 0) {
            pool.give(buffer);
            this.destroy(
              new GantryError(
                ErrorCodes.InvalidLayout,
                `tar archive ended early: ${end - position} bytes of an entry are missing`,
              ),
            );
            return;
          }
          position += bytesRead;
          this.push(bytesRead === wanted ? buffer : buffer.subarray(0, bytesRead));
        },
        (error: unknown) => {
          pool.give(buffer);
          this.destroy(error as Error);
        },
      );
    },
  });
}
