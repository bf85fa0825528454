/**
 * File-system helpers the OCI layout transports share: resolving the path a reference names, and
 * describing Node.js file-system errors the way skopeo users see them.
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { ErrorCodes, GantryError, isGantryError } from '@gantry/core';

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

/** A random suffix for temporary file names (16 hex digits). */
export function randomSuffix(): string {
  return randomBytes(8).toString('hex');
}

/**
 * `error` as a `GantryError`: as is when it already is one, else `ERR_GANTRY_INTERNAL` with
 * `<action>: <file-system error as Go describes it>`.
 */
export function fileSystemFailure(action: string, error: unknown): GantryError {
  if (isGantryError(error)) return error;
  return new GantryError(ErrorCodes.Internal, `${action}: ${describeFileSystemError(error)}`, {
    cause: error,
  });
}
