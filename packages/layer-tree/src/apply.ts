/**
 * Applies a layer tar to a directory in one streaming pass that also records the layer's tar-split, its
 * uncompressed sha256 and size, and the owner IDs it uses — what containers/storage does when it stores
 * a layer (pkg/archive UnpackLayer for vfs/btrfs, Untar with the overlay whiteout converter for overlay).
 *
 * Safety: every entry is placed inside the root. Names that are absolute or climb out with `..` are
 * refused; parent directories are resolved component by component inside the root (a symbolic link met on
 * the way is followed as if the root were `/`, never out of it); the final component is never followed
 * (whatever is there is replaced); symbolic links whose relative target climbs out of the root and hard
 * links to anything outside it are refused. Refusals are `ERR_GANTRY_INVALID_LAYER` naming the entry.
 *
 * File system calls: a new regular file of up to 256 KiB without xattrs in a directory this layer made
 * (the bulk of a layer of many small files) is written on a worker thread, in batches (file-writer.ts),
 * while the main thread goes on reading the tar (CRC-64, tar-split; the sha256 is computed on the thread
 * pool where it can be); larger files are written with one write in flight while the next chunk is read.
 * Everything else is done synchronously, in tar order, after the pending writes have finished (a barrier
 * before any entry that could touch a path still being written: whiteouts, hard links, replacements,
 * parents not yet known to be directories), so the result is what applying the entries one after the
 * other gives. The tar-split is recorded in tar order on the main thread.
 */
import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  symlinkSync,
  write,
} from 'node:fs';
import { isAbsolute } from 'node:path';
import { ErrorCodes, GantryError, OffThreadDigester, offThreadDigestAvailable } from '@gantry/core/transport';
import { Crc64, crc64 } from './crc64.js';
import { layerError } from './errors.js';
import { BatchedFileWriter } from './file-writer.js';
import { LayerRoot } from './layer-root.js';
import { nativeCalls, S_IFBLK, S_IFCHR, S_IFIFO } from './native.js';
import { type TarEntry, TarStreamReader } from './tar-reader.js';
import { cleanName, cleanPath, type TarSplitStyle, TarSplitWriter } from './tar-split.js';

/** Host ID ↔ container ID ranges (rootless: the ranges of /etc/subuid and /etc/subgid). */
export interface IdMapping {
  containerId: number;
  hostId: number;
  size: number;
}

export interface ApplyLayerOptions {
  /**
   * `apply`: whiteouts are carried out (`.wh.name` deletes `name`, `.wh..wh..opq` empties its directory of
   * everything this layer did not write): a full file system per layer (vfs, btrfs).
   * `overlay`: whiteouts are converted to overlay's format (a 0/0 character device for `.wh.name`, the
   * `<prefix>opaque="y"` xattr on the directory for `.wh..wh..opq`): one diff directory per layer.
   */
  whiteouts: 'apply' | 'overlay';
  /** Namespace of overlay's xattrs: `trusted.overlay.` (default, as root) or `user.overlay.` (rootless). */
  overlayXattrPrefix?: 'trusted.overlay.' | 'user.overlay.';
  /**
   * Whether the tar's root entry (`./`) sets the root directory's owner, mode and times. containers/storage
   * applies it for vfs/btrfs and skips it for overlay. Default: true with `whiteouts: 'apply'`.
   */
  applyRootEntry?: boolean;
  /** Container → host ID mappings applied to every owner written; empty = identity. */
  uidMappings?: readonly IdMapping[];
  gidMappings?: readonly IdMapping[];
  /** Without root (in a user namespace): device nodes are skipped, as containers/storage does. */
  rootless?: boolean;
  /** Ignore errors changing owners (containers/storage's `ignore_chown_errors`). */
  ignoreChownErrors?: boolean;
  /** Which tar-split release's output to reproduce (default: Debian's podman 4.3, tar-split 0.11.2). */
  tarSplitStyle?: TarSplitStyle;
  signal?: AbortSignal;
}

export interface ApplyLayerResult {
  /** `sha256:<hex>` of every byte of the tar read (the DiffID). */
  uncompressedDigest: string;
  uncompressedSize: number;
  /** The layer's tar-split, gzip-compressed (containers/storage's `<id>.tar-split.gz`). */
  tarSplitGzip: Buffer;
  /** Distinct owner IDs in the tar (unmapped, whiteouts skipped), ascending. */
  uids: number[];
  gids: number[];
}

const whiteoutPrefix = '.wh.';
const whiteoutMetaPrefix = '.wh..wh.';
const opaqueWhiteout = '.wh..wh..opq';
const fileOpenFlags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
/** New files up to this size are written on the file-writing worker (content gathered in memory first). */
const deferredFileMaxSize = 256 * 1024;
const emptyContent = Buffer.alloc(0);

function callbackPromise<T>(call: (done: (error: Error | null, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    call((error, value) => (error ? reject(error) : resolve(value)));
  });
}

const writeAsync = (fd: number, buffer: Buffer, offset: number, length: number) =>
  callbackPromise<number>((done) => write(fd, buffer, offset, length, null, done));

/** Writes all of `buffer` to `fd` on the thread pool. */
async function writeAllAsync(fd: number, buffer: Buffer): Promise<void> {
  let written = 0;
  while (written < buffer.length) written += await writeAsync(fd, buffer, written, buffer.length - written);
}

/** `input`'s chunks, each handed to `digester` (hashed off this thread) on its way. */
async function* hashedOffThread(
  input: AsyncIterable<Uint8Array>,
  digester: OffThreadDigester,
): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const chunk of input) {
    const wait = digester.update(chunk);
    yield chunk;
    if (wait !== undefined) await wait;
  }
}

function mapId(id: number, mappings: readonly IdMapping[] | undefined, kind: string, entry: string): number {
  if (mappings === undefined || mappings.length === 0) return id;
  for (const range of mappings) {
    if (id >= range.containerId && id < range.containerId + range.size)
      return range.hostId + (id - range.containerId);
  }
  throw layerError(`layer tar: entry "${entry}": ${kind} ${id} is not in the ID mapping`);
}

function errnoCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error
    ? String((error as { code: unknown }).code)
    : undefined;
}

function timeSeconds(seconds: number, nanoseconds: number): number {
  return seconds + nanoseconds / 1e9;
}

function joinRelative(directory: string, base: string): string {
  return directory === '' ? base : `${directory}/${base}`;
}

function splitName(clean: string): { parent: string[]; base: string } {
  const slash = clean.lastIndexOf('/');
  if (slash === -1) return { parent: [], base: clean };
  return { parent: clean.slice(0, slash).split('/'), base: clean.slice(slash + 1) };
}

/** Applies the layer tar read from `input` to the directory `root` (which must exist). */
export async function applyLayer(
  input: AsyncIterable<Uint8Array>,
  root: string,
  options: ApplyLayerOptions,
): Promise<ApplyLayerResult> {
  if (!isAbsolute(root))
    throw new GantryError(ErrorCodes.Internal, `applyLayer: root "${root}" is not absolute`);
  const { signal } = options;
  signal?.throwIfAborted();
  const overlay = options.whiteouts === 'overlay';
  const overlayPrefix = options.overlayXattrPrefix ?? 'trusted.overlay.';
  const applyRootEntry = options.applyRootEntry ?? !overlay;
  const hasMappings = (options.uidMappings?.length ?? 0) > 0 || (options.gidMappings?.length ?? 0) > 0;
  const implicitOwner = hasMappings
    ? { uid: mapId(0, options.uidMappings, 'uid', '.'), gid: mapId(0, options.gidMappings, 'gid', '.') }
    : undefined;
  // What this application created, so that most entries need no lstat and no chown/chmod call:
  // `fresh` directories (made here, or the root when it started empty) hold only what this layer wrote.
  const freshDirectories = new Map<string, boolean>(); // relative path → has the set-gid bit
  const created = new Set<string>();
  const layerRoot = new LayerRoot(root, implicitOwner, (relative) => {
    freshDirectories.set(relative, false);
    created.add(relative);
  });
  {
    const rootStats = lstatSync(root);
    if (readdirSync(root).length === 0) freshDirectories.set('', (rootStats.mode & 0o2000) !== 0);
  }
  const umask = process.umask();
  const effectiveUid = process.geteuid?.() ?? -1;
  const effectiveGid = process.getegid?.() ?? -1;
  // Chunks of `input` are never reused (small files' contents are kept as views until written): header
  // blocks and padding are views of them too. The DiffID is hashed on the thread pool where it can be
  // (the main thread reads the tar meanwhile), else by the reader.
  const digester = offThreadDigestAvailable() ? new OffThreadDigester('sha256') : undefined;
  const reader = new TarStreamReader(digester ? hashedOffThread(input, digester) : input, {
    views: true,
    digest: digester === undefined,
  });
  const tarSplit = new TarSplitWriter();
  const uids = new Set<number>();
  const gids = new Set<number>();
  // The owner of the entry before (most entries share one): the sets are not looked into again for it.
  let lastUid = -1;
  let lastGid = -1;
  const unpacked = new Set<string>();
  const directoryTimes: Array<{ relative: string; atime: number; mtime: number }> = [];
  // Small new files are written on the file-writing worker; the first failure is thrown at the next barrier.
  const fileWriter = new BatchedFileWriter({
    ignoreChownErrors: options.ignoreChownErrors === true,
    describeFailure: (entry, error) => wrapEntryError(error, entry) as Error,
  });
  /** The last directory a small file was queued in, and its full path (one string for a run of files). */
  let lastDirectory: string | undefined;
  let lastDirectoryPath = '';
  const directoryPath = (relative: string): string => {
    if (relative !== lastDirectory) {
      lastDirectory = relative;
      lastDirectoryPath = layerRoot.fullLatin1(relative);
    }
    return lastDirectoryPath;
  };
  /** The current entry's name bytes as a Latin-1 string (decoded once per entry). */
  let nameLatin1 = '';
  /** The first piece of the current entry's content, taken by `readContentNow` for `readContent`. */
  let pendingContent: Buffer | undefined;
  let succeeded = false;
  try {
    for (;;) {
      signal?.throwIfAborted();
      if (tarSplit.needsDrain) await tarSplit.drained();
      const entry = await reader.next();
      if (entry === undefined) break;
      tarSplit.addSegment(entry.raw);
      const { header } = entry;
      const display = header.name;
      const base = header.nameBytes.toString('latin1');
      nameLatin1 = base;
      const baseName = base.endsWith('/') ? base.slice(0, -1) : base;
      const lastComponent = baseName.slice(baseName.lastIndexOf('/') + 1);
      if (!lastComponent.startsWith(whiteoutPrefix)) {
        const uid = header.uid >>> 0;
        const gid = header.gid >>> 0;
        if (uid !== lastUid) {
          uids.add(uid);
          lastUid = uid;
        }
        if (gid !== lastGid) {
          gids.add(gid);
          lastGid = gid;
        }
      }
      if (header.type === 'pax-global-header') {
        tarSplit.addFile(header.nameBytes, 0, null);
        continue;
      }
      try {
        const applying = applyEntry(entry);
        if (applying !== undefined) await applying;
      } catch (error) {
        if (error instanceof GantryError) throw error;
        throw new GantryError(
          ErrorCodes.Internal,
          `layer tar: entry "${display}": ${(error as Error).message}`,
          { cause: error },
        );
      }
    }
    await drainDeferred();
    tarSplit.addSegment(reader.end);
    for await (const chunk of reader.trailing()) tarSplit.addSegment(chunk);
    tarSplit.finishTrailer(options.tarSplitStyle);
    for (const { relative, atime, mtime } of directoryTimes) {
      if (layerRoot.lstat(relative)?.isDirectory()) lutimesSync(layerRoot.full(relative), atime, mtime);
    }
    const tarSplitGzip = await tarSplit.finish();
    const uncompressedDigest = digester ? await digester.digest() : `sha256:${reader.digestHex()}`;
    succeeded = true;
    return {
      uncompressedDigest,
      uncompressedSize: reader.bytesRead,
      tarSplitGzip,
      uids: [...uids].sort((a, b) => a - b),
      gids: [...gids].sort((a, b) => a - b),
    };
  } finally {
    if (!succeeded) {
      // Nothing may still be writing when the caller removes what was applied.
      await fileWriter.settle();
      reader.close();
      tarSplit.destroy();
    }
  }

  /** Waits for every file being written on the worker; throws the first failure. */
  async function drainDeferred(): Promise<void> {
    await fileWriter.drain();
  }

  function wrapEntryError(error: unknown, display: string): unknown {
    if (error instanceof GantryError) return error;
    return new GantryError(
      ErrorCodes.Internal,
      `layer tar: entry "${display}": ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }

  /**
   * A new regular file (nothing at its path, its directory made by this layer, no xattrs), written on the
   * file-writing worker: content gathered here (CRC-64 and tar-split recorded in order), then open, write,
   * owner, mode, times and close there, in batches (see file-writer.ts).
   */
  function writeFileDeferred(
    entry: TarEntry,
    relative: string,
    parentPath: string,
    uid: number,
    gid: number,
  ): Promise<void> | undefined {
    // Without a promise when the content is at hand (the common case: one small piece of the input).
    const content = readContentNow(entry.dataSize);
    if (content !== undefined) return queueFile(entry, content, relative, parentPath, uid, gid);
    return readContent(entry.dataSize).then((read) => queueFile(entry, read, relative, parentPath, uid, gid));
  }

  /** The current entry's whole content when the input's chunk at hand holds all of it, else undefined. */
  function readContentNow(size: number): Buffer | undefined {
    if (size === 0) return emptyContent;
    const first = reader.readDataNow(size);
    if (first === undefined) return undefined;
    if (first.length === size) return first;
    // Only part of it here: the rest is read by `readContent`, which must see this part too.
    pendingContent = first;
    return undefined;
  }

  /** `relative`'s directory is `parentPath`, a fresh directory (see `applyEntry`). */
  function queueFile(
    entry: TarEntry,
    content: Buffer,
    relative: string,
    parentPath: string,
    uid: number,
    gid: number,
  ): Promise<void> | undefined {
    const { header } = entry;
    signal?.throwIfAborted();
    tarSplit.addFile(header.nameBytes, header.size, header.size > 0 ? crc64(content) : null, nameLatin1);
    // As `ownerAlreadyRight` and `modeAlreadyRight`, with the directory looked up once.
    const plainDirectory = freshDirectories.get(parentPath) === false;
    const mode = header.mode;
    const chown = !(plainDirectory && uid === effectiveUid && gid === effectiveGid);
    const chmod = !(plainDirectory && (mode & 0o7777) === (mode & 0o777 & ~umask));
    const mtime = timeSeconds(header.mtimeSeconds, header.mtimeNanoseconds);
    const atime =
      header.atimeSeconds === undefined ? mtime : timeSeconds(header.atimeSeconds, header.atimeNanoseconds);
    created.add(relative);
    unpacked.add(relative);
    // The job is copied to the worker when its batch is sent: views of the input are fine here.
    const room = fileWriter.add(
      {
        directory: directoryPath(parentPath),
        name: parentPath === '' ? relative : relative.slice(parentPath.length + 1),
        content,
        openMode: mode & 0o777,
        chmodMode: chmod ? mode & 0o7777 : -1,
        uid: chown ? uid : -1,
        gid: chown ? gid : -1,
        atime: Math.max(atime, mtime),
        mtime,
      },
      header.name,
    );
    return room;
  }

  /**
   * The current entry's whole content (`size` bytes): a view of the input when it lies in one piece
   * (the common case for small files: one read), else the pieces joined.
   */
  async function readContent(size: number): Promise<Buffer> {
    if (size === 0) return emptyContent;
    const first = pendingContent ?? ((await reader.readData()) as Buffer);
    pendingContent = undefined;
    if (first.length === size) return first;
    const pieces = [first];
    let length = first.length;
    while (length < size) {
      const chunk = (await reader.readData()) as Buffer;
      pieces.push(chunk);
      length += chunk.length;
    }
    return Buffer.concat(pieces, length);
  }

  /**
   * Reads (and discards) the entry's content, returning its CRC-64; writes it to `fd` when given, one
   * write on the thread pool in flight while the next chunk is read (chunks are views of the input, which
   * is not reused).
   */
  async function consumeData(fd: number | undefined): Promise<Buffer> {
    const crc = new Crc64();
    let writing: Promise<void> | undefined;
    try {
      for (;;) {
        const chunk = await reader.readData();
        if (chunk === undefined) break;
        signal?.throwIfAborted();
        crc.update(chunk);
        if (fd !== undefined) {
          if (writing !== undefined) await writing;
          writing = writeAllAsync(fd, chunk);
          // Handled when awaited; a failure must not be reported as unhandled meanwhile.
          writing.catch(() => undefined);
        }
      }
      if (writing !== undefined) await writing;
    } catch (error) {
      if (writing !== undefined) await writing.catch(() => undefined);
      throw error;
    }
    return crc.digest();
  }

  async function recordFile(entry: TarEntry, fd?: number): Promise<void> {
    const { header } = entry;
    if (entry.dataSize === 0) {
      // Nothing to read (directories, links, devices, empty files): the CRC-64 of no bytes.
      tarSplit.addFile(
        header.nameBytes,
        header.size,
        header.size > 0 ? crc64(emptyContent) : null,
        nameLatin1,
      );
      return;
    }
    if (header.size > 0) {
      const crc = await consumeData(fd);
      tarSplit.addFile(header.nameBytes, header.size, crc, nameLatin1);
    } else {
      await consumeData(fd);
      tarSplit.addFile(header.nameBytes, 0, null, nameLatin1);
    }
  }

  /** Applies the entry: without a promise for a small new file whose content is at hand (most entries). */
  function applyEntry(entry: TarEntry): Promise<void> | undefined {
    const { header } = entry;
    const display = header.name;
    const rawName = nameLatin1;
    if (rawName.startsWith('/')) throw layerError(`layer tar: entry "${display}" has an absolute name`);
    const clean = cleanName(rawName);
    if (clean === '..' || clean.startsWith('../'))
      throw layerError(`layer tar: entry "${display}" climbs out of the layer with ".."`);
    const uid = mapId(header.uid, options.uidMappings, 'uid', display);
    const gid = mapId(header.gid, options.gidMappings, 'gid', display);
    // `clean` is `<parentPath>/<base>` (or `base` at the top).
    const slash = clean.lastIndexOf('/');
    const parentPath = slash === -1 ? '' : clean.slice(0, slash);
    const base = slash === -1 ? clean : clean.slice(slash + 1);

    // The fast path: a file, directory or symbolic link under a known directory made by this layer, at a
    // path nothing occupies; it cannot touch a file still being written. Anything else waits for them.
    const independent =
      clean !== '.' &&
      !base.startsWith(whiteoutPrefix) &&
      (header.type === 'file' || header.type === 'directory' || header.type === 'symlink') &&
      layerRoot.isKnownDirectory(parentPath) &&
      freshDirectories.has(parentPath) &&
      !created.has(clean);
    if (
      independent &&
      header.type === 'file' &&
      header.size <= deferredFileMaxSize &&
      header.xattrs.size === 0
    ) {
      return writeFileDeferred(entry, clean, parentPath, uid, gid);
    }
    return applyEntryInOrder(entry, clean, uid, gid, independent);
  }

  /** Every other entry: after the pending writes when it could touch a path still being written. */
  async function applyEntryInOrder(
    entry: TarEntry,
    clean: string,
    uid: number,
    gid: number,
    independent: boolean,
  ): Promise<void> {
    const { header } = entry;
    const display = header.name;
    if (!independent) await drainDeferred();
    const slash = clean.lastIndexOf('/');
    const parentPath = slash === -1 ? '' : clean.slice(0, slash);
    const base = slash === -1 ? clean : clean.slice(slash + 1);
    const parent = slash === -1 ? [] : parentPath.split('/');

    if (clean === '.') {
      if (header.type !== 'directory')
        throw layerError(`layer tar: entry "${display}" replaces the layer's root with a non-directory`);
      await recordFile(entry);
      if (applyRootEntry) {
        setOwner('', uid, gid);
        setXattrs('', header.xattrs);
        chmodSync(layerRoot.full(''), header.mode);
        directoryTimes.push({ relative: '', ...times(header) });
      }
      return;
    }

    if (base.startsWith(whiteoutPrefix)) {
      await recordFile(entry);
      if (base.startsWith(whiteoutMetaPrefix) && base !== opaqueWhiteout) return; // aufs metadata: skipped
      const directory = layerRoot.resolveDirectory(parent, display, true) as string;
      if (base === opaqueWhiteout) {
        if (overlay) {
          nativeCalls().lsetxattr(layerRoot.full(directory), `${overlayPrefix}opaque`, Buffer.from('y'));
        } else {
          emptyDirectoryExceptUnpacked(directory);
        }
        return;
      }
      const target = joinRelative(directory, base.slice(whiteoutPrefix.length));
      removePath(target);
      if (overlay) {
        try {
          nativeCalls().mknod(layerRoot.full(target), S_IFCHR, 0, 0);
        } catch (error) {
          if (errnoCode(error) === 'ENOTDIR') return;
          throw error;
        }
        created.add(target);
        if (!ownerAlreadyRight(target, uid, gid)) setOwner(target, uid, gid);
      }
      return;
    }

    const directory = layerRoot.resolveDirectory(parent, display, true) as string;
    const relative = joinRelative(directory, base);
    const path = layerRoot.full(relative);
    const existing = knownAbsent(relative) ? undefined : layerRoot.lstat(relative);
    if (existing !== undefined && !(existing.isDirectory() && header.type === 'directory'))
      removePath(relative);
    const existsAsDirectory = existing?.isDirectory() === true && header.type === 'directory';
    const { atime, mtime } = times(header);

    switch (header.type) {
      case 'directory':
        await recordFile(entry);
        if (!existsAsDirectory) {
          mkdirSync(path, header.mode & 0o777);
          freshDirectories.set(relative, (header.mode & 0o2000) !== 0);
        }
        layerRoot.rememberDirectory(relative);
        break;
      case 'file': {
        // Regular files get their metadata through the open descriptor: no path lookups.
        const fd = openSync(path, fileOpenFlags, header.mode & 0o777);
        try {
          created.add(relative);
          await recordFile(entry, fd);
          if (!ownerAlreadyRight(relative, uid, gid)) setOwnerOfDescriptor(fd, uid, gid);
          setXattrs(relative, header.xattrs);
          if (!modeAlreadyRight(relative, header.mode)) fchmodSync(fd, header.mode);
          futimesSync(fd, atime, mtime);
        } finally {
          closeSync(fd);
        }
        unpacked.add(relative);
        return;
      }
      case 'hardlink': {
        await recordFile(entry);
        const linkRaw = header.linkNameBytes.toString('latin1');
        const linkClean = cleanPath(linkRaw);
        if (
          linkRaw.startsWith('/') ||
          linkClean === '..' ||
          linkClean.startsWith('../') ||
          linkClean === '.'
        ) {
          throw layerError(
            `layer tar: entry "${display}" is a hard link to "${header.linkName}", outside the layer`,
          );
        }
        const { parent: linkParent, base: linkBase } = splitName(linkClean);
        const linkDirectory = layerRoot.resolveDirectory(linkParent, display, false);
        const targetRelative =
          linkDirectory === undefined ? undefined : joinRelative(linkDirectory, linkBase);
        if (targetRelative === undefined || layerRoot.lstat(targetRelative) === undefined) {
          throw layerError(
            `layer tar: entry "${display}" is a hard link to "${header.linkName}", which does not exist`,
          );
        }
        linkSync(layerRoot.full(targetRelative), path);
        break;
      }
      case 'symlink': {
        await recordFile(entry);
        const linkRaw = header.linkNameBytes.toString('latin1');
        if (!linkRaw.startsWith('/')) {
          const resolved = cleanPath(
            `${clean.includes('/') ? clean.slice(0, clean.lastIndexOf('/')) : '.'}/${linkRaw}`,
          );
          if (resolved === '..' || resolved.startsWith('../')) {
            throw layerError(
              `layer tar: entry "${display}" is a symbolic link to "${header.linkName}", outside the layer`,
            );
          }
        }
        symlinkSync(header.linkNameBytes, path);
        break;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        await recordFile(entry);
        if (options.rootless && header.type !== 'fifo') return; // no CAP_MKNOD in a user namespace
        const kind = header.type === 'fifo' ? S_IFIFO : header.type === 'block-device' ? S_IFBLK : S_IFCHR;
        nativeCalls().mknod(path, kind | (header.mode & 0o777), header.devMajor, header.devMinor);
        break;
      }
      default:
        throw layerError(`layer tar: entry "${display}" has an unsupported type`);
    }

    const madeHere = header.type !== 'hardlink' && !existsAsDirectory;
    created.add(relative);
    if (!(madeHere && ownerAlreadyRight(relative, uid, gid))) setOwner(relative, uid, gid);
    setXattrs(relative, header.xattrs);
    if (header.type !== 'symlink') {
      if (header.type === 'hardlink') {
        if (!layerRoot.lstat(relative)?.isSymbolicLink()) chmodSync(path, header.mode);
      } else if (!(madeHere && modeAlreadyRight(relative, header.mode))) {
        chmodSync(path, header.mode);
      }
    }
    if (header.type === 'directory') directoryTimes.push({ relative, atime, mtime });
    else lutimesSync(path, atime, mtime);
    unpacked.add(relative);
  }

  function times(header: TarEntry['header']): { atime: number; mtime: number } {
    const mtime = timeSeconds(header.mtimeSeconds, header.mtimeNanoseconds);
    const atime =
      header.atimeSeconds === undefined ? mtime : timeSeconds(header.atimeSeconds, header.atimeNanoseconds);
    return { atime: Math.max(atime, mtime), mtime };
  }

  function parentOf(relative: string): string {
    const slash = relative.lastIndexOf('/');
    return slash === -1 ? '' : relative.slice(0, slash);
  }

  /** True when nothing can be at `relative`: its directory is fresh and this layer put nothing there. */
  function knownAbsent(relative: string): boolean {
    return freshDirectories.has(parentOf(relative)) && !created.has(relative);
  }

  /** Removes whatever is at `relative` (recursively), keeping the bookkeeping right. */
  function removePath(relative: string): void {
    if (knownAbsent(relative)) return;
    layerRoot.forget(relative);
    rmSync(layerRoot.full(relative), { recursive: true, force: true });
    created.delete(relative);
    if (freshDirectories.delete(relative)) {
      const prefix = `${relative}/`;
      for (const path of created) if (path.startsWith(prefix)) created.delete(path);
      for (const path of freshDirectories.keys()) if (path.startsWith(prefix)) freshDirectories.delete(path);
    }
  }

  /** A new file in a fresh directory without set-gid is already ours: no chown needed for our own IDs. */
  function ownerAlreadyRight(relative: string, uid: number, gid: number): boolean {
    return uid === effectiveUid && gid === effectiveGid && freshDirectories.get(parentOf(relative)) === false;
  }

  /**
   * open/mkdir/mknod made it with `mode & 0o777 & ~umask`, and a parent without set-gid added no bit:
   * chmod only when that is not the mode.
   */
  function modeAlreadyRight(relative: string, mode: number): boolean {
    return freshDirectories.get(parentOf(relative)) === false && (mode & 0o7777) === (mode & 0o777 & ~umask);
  }

  function setOwner(relative: string, uid: number, gid: number): void {
    try {
      lchownSync(layerRoot.full(relative), uid, gid);
    } catch (error) {
      if (!options.ignoreChownErrors) throw error;
    }
  }

  function setOwnerOfDescriptor(fd: number, uid: number, gid: number): void {
    try {
      fchownSync(fd, uid, gid);
    } catch (error) {
      if (!options.ignoreChownErrors) throw error;
    }
  }

  function setXattrs(relative: string, xattrs: Map<string, Buffer>): void {
    if (xattrs.size === 0) return;
    const native = nativeCalls();
    for (const [name, value] of xattrs) {
      try {
        native.lsetxattr(layerRoot.full(relative), name, value);
      } catch (error) {
        const code = errnoCode(error);
        // As containers/storage: attributes the file system or our privileges refuse are dropped.
        if (code === 'ENOTSUP' || code === 'EPERM') continue;
        throw error;
      }
    }
  }

  /** `.wh..wh..opq` applied: removes what the directory holds that this layer did not write. */
  function emptyDirectoryExceptUnpacked(directory: string): void {
    const walk = (relative: string): void => {
      let names: Buffer[];
      try {
        names = readdirSync(layerRoot.full(relative), { encoding: 'buffer' });
      } catch (error) {
        if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return;
        throw error;
      }
      for (const name of names) {
        const child = joinRelative(relative, name.toString('latin1'));
        if (!unpacked.has(child)) {
          removePath(child);
        } else if (layerRoot.lstat(child)?.isDirectory()) {
          walk(child);
        }
      }
    };
    walk(directory);
  }
}
