/**
 * Small file-system helpers shared by the `oci:` source, destination and delete code.
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, realpathSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/** The error code of a Node.js system error (`ENOENT`…), if it is one. */
export function errorCode(error: unknown): string | undefined {
  return error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
}

/**
 * Describes a Node.js file-system error the way Go does (`lstat /x: no such file or directory`), which is
 * what skopeo users see.
 */
export function describeFileSystemError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const systemError = error as NodeJS.ErrnoException;
  const description = /^[A-Z0-9_]+: (.*?)(?:, [a-z_]+(?: '.*')?)?$/s.exec(systemError.message)?.[1];
  if (systemError.syscall && systemError.path !== undefined && description) {
    return `${systemError.syscall} ${systemError.path}: ${description}`;
  }
  return systemError.message;
}

/**
 * Converts `input` into an absolute, cleaned path without symbolic links, like containers/image's
 * `explicitfilepath.ResolvePathToFullyExplicit`:
 * - `..` is resolved lexically first (as Go's `filepath.Abs` does), then symbolic links;
 * - every component must exist, except the last one, which may be missing (but not a dangling symlink);
 * - `''` means the current directory.
 *
 * Throws the underlying file-system error when a parent is missing or is not a directory.
 */
export function resolvePathToFullyExplicit(input: string): string {
  let exists: boolean;
  try {
    lstatSync(input === '' ? '.' : input);
    exists = true;
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
    exists = false;
  }
  const absolute = path.resolve(input);
  if (exists) return realpathSync.native(absolute);
  const resolvedParent = realpathSync.native(path.dirname(absolute));
  return path.join(resolvedParent, path.basename(absolute));
}

/** A random suffix for temporary file names. */
export function randomSuffix(): string {
  return randomBytes(8).toString('hex');
}

/**
 * Writes `content` to `filePath` atomically: into a temporary file in the same directory, flushed to
 * disk, then renamed over the target. Readers see either the old or the new content, never a mix.
 */
export async function writeFileAtomically(
  filePath: string,
  content: Uint8Array | string,
  mode = 0o644,
): Promise<void> {
  const temporaryPath = `${filePath}.tmp-${randomSuffix()}`;
  let renamed = false;
  try {
    const handle = await open(temporaryPath, 'wx', mode);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporaryPath, filePath);
    renamed = true;
  } finally {
    if (!renamed) await rm(temporaryPath, { force: true });
  }
}
