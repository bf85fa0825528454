import { lstatSync, realpathSync } from 'node:fs';
import path from 'node:path';

/**
 * Describes a Node.js file-system error the way Go does (`lstat /x: no such file or directory`), which
 * is what skopeo users see.
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

/** The error code of a Node.js system error, if it is one. */
export function errorCode(error: unknown): string | undefined {
  return error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
}

function resolveExistingPath(input: string): string {
  return realpathSync(path.resolve(input));
}

/**
 * Converts `input` into an absolute, cleaned path without symbolic links, like containers/image's
 * `explicitfilepath.ResolvePathToFullyExplicit`:
 * - every component must exist, except that the last one may be missing (but not be a dangling symlink);
 * - `..` is resolved lexically first (as Go's `filepath.Abs` does), then symlinks are resolved;
 * - `''` means the current directory.
 *
 * Throws the underlying file-system error (`lstat /x: no such file or directory`) when a parent is
 * missing or is not a directory.
 */
export function resolvePathToFullyExplicit(input: string): string {
  let exists: boolean;
  try {
    lstatSync(input);
    exists = true;
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
    exists = false;
  }
  if (exists) return resolveExistingPath(input);
  const slash = input.lastIndexOf('/');
  const parent = input.slice(0, slash + 1);
  const file = input.slice(slash + 1);
  const resolvedParent = resolveExistingPath(parent);
  if (file === '.' || file === '..') {
    throw new Error(`Unexpectedly missing special filename component in ${input}`);
  }
  return path.join(resolvedParent, file);
}
