import { ErrorCodes, GantryError, isGantryError } from '@gantry/core';

/** The message of any thrown value. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
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
