/**
 * Small file-system helpers.
 *
 * `resolvePathToFullyExplicit` and `describeFileSystemError` repeat what `@gantry/transport-oci` has in
 * its own file-system.ts (transports never import each other); they belong in a shared place (core).
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, realpathSync } from 'node:fs';
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
 * - every component must exist, except the last one, which may be missing;
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
