import { ErrorCodes, GantryError, isGantryError } from '@gantry/core';
import { describeFileSystemError } from '@gantry/core/transport';

/**
 * The message of any thrown value; a Node.js system error is worded as Go's (`open /x: read-only file
 * system`, what skopeo prints) instead of libuv's (`EROFS: read-only file system, open '/x'`).
 */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? describeFileSystemError(error) : String(error);
}

/**
 * Prefixes an error's message like Go's `fmt.Errorf("prefix: %w", err)`, keeping the Gantry error code
 * (so "image not found" still exits with 2).
 */
export function wrapError(prefix: string, error: unknown): GantryError {
  const code = isGantryError(error) ? error.code : ErrorCodes.Internal;
  return new GantryError(code, `${prefix}: ${errorMessage(error)}`, {
    cause: error,
    retryable: isGantryError(error) ? error.retryable : false,
  });
}
