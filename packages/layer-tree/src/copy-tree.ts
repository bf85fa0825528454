/**
 * Copies a directory tree preserving everything a layer holds: owners, modes (set-id bits too), times,
 * extended attributes (security.capability, overlay's), hard links (by inode), symbolic links, device
 * nodes, fifos. The vfs and btrfs-less drivers build a child layer from a copy of its parent this way,
 * as containers/storage's DirCopy does. Regular files are cloned (reflink) where the file system can.
 *
 * `copyTree` makes every call synchronously. `copyTreeAsync` copies the contents of large regular files
 * (1 MiB and more) on libuv's thread pool, several at once, so that the copy of a parent layer of big files
 * uses more than one core and leaves the main thread free meanwhile (for downloads still arriving); the
 * rest (directories, small files, links, devices, owners, modes, times) is done as `copyTree` does it, and
 * every directory's metadata and times are set after everything inside it was written.
 */
import {
  chmodSync,
  constants,
  copyFileSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  type Stats,
  symlinkSync,
} from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { nativeCalls, S_IFBLK, S_IFCHR, S_IFIFO } from './native.js';

export interface CopyTreeOptions {
  signal?: AbortSignal;
}

function major(rdev: number): number {
  return ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
}

function minor(rdev: number): number {
  return (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
}

/** Regular files at least this large are copied on the thread pool by `copyTreeAsync`. */
const asyncCopyMinimumSize = 1 << 20;
/** How many large files `copyTreeAsync` copies at once. */
const asyncCopyConcurrency = 4;

interface LargeFileCopy {
  from: Buffer;
  to: Buffer;
  stats: Stats;
}

/**
 * Walks `source`, recreating it under `destination`. Regular files for which `deferFile` returns true are
 * not copied but returned (with the hard links to them, which need them to exist first); the caller
 * copies them, then calls `finish` (directory metadata and times, innermost first, then the root's).
 */
function copyTreeExcept(
  source: string,
  destination: string,
  options: CopyTreeOptions,
  deferFile: (stats: Stats) => boolean,
): {
  deferred: LargeFileCopy[];
  links: Array<{ target: Buffer; path: Buffer }>;
  copyFileMetadata: (copy: LargeFileCopy) => void;
  finish: () => void;
} {
  const native = nativeCalls();
  const linked = new Map<string, Buffer>();
  const deferredInodes = new Set<string>();
  const deferred: LargeFileCopy[] = [];
  const links: Array<{ target: Buffer; path: Buffer }> = [];
  const directories: Array<{ from: Buffer; path: Buffer; stats: Stats }> = [];

  const copyMetadata = (from: Buffer, to: Buffer, stats: Stats, isLink: boolean): void => {
    lchownSync(to, stats.uid, stats.gid);
    for (const name of native.llistxattr(from)) {
      const value = native.lgetxattr(from, name);
      if (value === undefined) continue;
      try {
        native.lsetxattr(to, name, value);
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (code !== 'ENOTSUP' && code !== 'EPERM') throw error;
      }
    }
    if (!isLink) chmodSync(to, stats.mode & 0o7777);
  };

  const walk = (from: Buffer, to: Buffer): void => {
    options.signal?.throwIfAborted();
    for (const name of readdirSync(from, { encoding: 'buffer' })) {
      const childFrom = Buffer.concat([from, Buffer.from('/'), name]);
      const childTo = Buffer.concat([to, Buffer.from('/'), name]);
      const stats = lstatSync(childFrom);
      if (!stats.isDirectory() && stats.nlink > 1) {
        const key = `${stats.dev}:${stats.ino}`;
        const first = linked.get(key);
        if (first !== undefined) {
          if (deferredInodes.has(key)) links.push({ target: first, path: childTo });
          else linkSync(first, childTo);
          continue;
        }
        linked.set(key, childTo);
        if (stats.isFile() && deferFile(stats)) deferredInodes.add(key);
      }
      if (stats.isDirectory()) {
        mkdirSync(childTo, 0o700);
        walk(childFrom, childTo);
        directories.push({ from: childFrom, path: childTo, stats });
        continue;
      }
      if (stats.isFile()) {
        if (deferFile(stats)) {
          deferred.push({ from: childFrom, to: childTo, stats });
          continue;
        }
        copyFileSync(childFrom, childTo, constants.COPYFILE_FICLONE);
      } else if (stats.isSymbolicLink()) {
        symlinkSync(readlinkSync(childFrom, { encoding: 'buffer' }), childTo);
      } else if (stats.isCharacterDevice() || stats.isBlockDevice() || stats.isFIFO()) {
        const kind = stats.isFIFO() ? S_IFIFO : stats.isBlockDevice() ? S_IFBLK : S_IFCHR;
        native.mknod(childTo, kind | (stats.mode & 0o777), major(stats.rdev), minor(stats.rdev));
      } else {
        continue; // sockets are not layer content
      }
      copyMetadata(childFrom, childTo, stats, stats.isSymbolicLink());
      lutimesSync(childTo, stats.atimeMs / 1000, stats.mtimeMs / 1000);
    }
  };

  const from = Buffer.from(source);
  const to = Buffer.from(destination);
  walk(from, to);
  return {
    deferred,
    links,
    copyFileMetadata: (copy) => {
      copyMetadata(copy.from, copy.to, copy.stats, false);
      lutimesSync(copy.to, copy.stats.atimeMs / 1000, copy.stats.mtimeMs / 1000);
    },
    finish: () => {
      for (const { target, path } of links) linkSync(target, path);
      // Innermost directories first (the walk's order), each once everything inside it is written.
      for (const directory of directories)
        copyMetadata(directory.from, directory.path, directory.stats, false);
      const rootStats = lstatSync(from);
      copyMetadata(from, to, rootStats, false);
      lutimesSync(to, rootStats.atimeMs / 1000, rootStats.mtimeMs / 1000);
      for (const { path, stats } of directories)
        lutimesSync(path, stats.atimeMs / 1000, stats.mtimeMs / 1000);
    },
  };
}

/** Copies the contents of `source` into the existing directory `destination` (and its metadata onto it). */
export function copyTree(source: string, destination: string, options: CopyTreeOptions = {}): void {
  copyTreeExcept(source, destination, options, () => false).finish();
}

/**
 * Copies as `copyTree` does, the contents of regular files of 1 MiB or more on the thread pool, up to
 * four at once. On failure, what was copied so far stays (the caller removes `destination`).
 */
export async function copyTreeAsync(
  source: string,
  destination: string,
  options: CopyTreeOptions = {},
): Promise<void> {
  const plan = copyTreeExcept(source, destination, options, (stats) => stats.size >= asyncCopyMinimumSize);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const copyNext = async (): Promise<void> => {
    while (failure === undefined && next < plan.deferred.length) {
      const copy = plan.deferred[next++]!;
      try {
        options.signal?.throwIfAborted();
        await copyFile(copy.from, copy.to, constants.COPYFILE_FICLONE);
        plan.copyFileMetadata(copy);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(asyncCopyConcurrency, plan.deferred.length) }, () => copyNext()),
  );
  if (failure) throw failure.error;
  plan.finish();
}
