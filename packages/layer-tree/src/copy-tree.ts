/**
 * Copies a directory tree preserving everything a layer holds: owners, modes (set-id bits too), times,
 * extended attributes (security.capability, overlay's), hard links (by inode), symbolic links, device
 * nodes, fifos. The vfs and btrfs-less drivers build a child layer from a copy of its parent this way,
 * as containers/storage's DirCopy does. Regular files are cloned (reflink) where the file system can.
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

/** Copies the contents of `source` into the existing directory `destination` (and its metadata onto it). */
export function copyTree(source: string, destination: string, options: CopyTreeOptions = {}): void {
  const native = nativeCalls();
  const linked = new Map<string, Buffer>();
  const directoryTimes: Array<{ path: Buffer; atime: number; mtime: number }> = [];

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
          linkSync(first, childTo);
          continue;
        }
        linked.set(key, childTo);
      }
      if (stats.isDirectory()) {
        mkdirSync(childTo, 0o700);
        walk(childFrom, childTo);
        copyMetadata(childFrom, childTo, stats, false);
        directoryTimes.push({ path: childTo, atime: stats.atimeMs / 1000, mtime: stats.mtimeMs / 1000 });
        continue;
      }
      if (stats.isFile()) {
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
  const rootStats = lstatSync(from);
  copyMetadata(from, to, rootStats, false);
  lutimesSync(to, rootStats.atimeMs / 1000, rootStats.mtimeMs / 1000);
  for (const { path, atime, mtime } of directoryTimes) lutimesSync(path, atime, mtime);
}
