import { setTimeout as sleep } from 'node:timers/promises';
import {
  describeFileSystemError,
  ErrorCodes,
  GantryError,
  isGantryError,
  isRetryableError,
  retryDelay,
  throwIfAborted,
} from '@gantry/core';

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

/** Runs `operation`, retrying retryable failures `retryTimes` times like skopeo's retry.IfNecessary. */
export async function withRetries<T>(
  operation: () => Promise<T>,
  settings: {
    retryTimes: number;
    retryDelayMs: number | undefined;
    signal: AbortSignal | undefined;
    onRetry?: (attempt: number, error: unknown, delayMs: number) => void;
  },
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      throwIfAborted(settings.signal);
      if (attempt > settings.retryTimes || !isRetryableError(error)) throw error;
      const delayMs = retryDelay(attempt, settings.retryDelayMs);
      settings.onRetry?.(attempt, error, delayMs);
      await sleep(delayMs, undefined, settings.signal ? { signal: settings.signal } : undefined).catch(() => {
        throwIfAborted(settings.signal);
      });
    }
  }
}
