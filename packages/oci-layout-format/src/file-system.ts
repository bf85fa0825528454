/**
 * File-system helpers the OCI layout transports share: temporary-name suffixes and turning Node.js
 * file-system errors into `GantryError`s. Resolving paths and describing errors come from `@gantry/core`
 * (re-exported here, as before).
 */
import { randomBytes } from 'node:crypto';
import { describeFileSystemError, ErrorCodes, GantryError, isGantryError } from '@gantry/core/transport';

export { describeFileSystemError, errorCode, resolvePathToFullyExplicit } from '@gantry/core/transport';

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
