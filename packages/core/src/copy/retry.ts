import { setTimeout as sleep } from 'node:timers/promises';
import { abortError, ErrorCodes, hasErrorCode, isGantryError } from '../errors.js';

/**
 * Node.js error codes of failures that may succeed when tried again: containers/common's retryable
 * errnos (a registry not listening yet, an unreachable network, a reset connection, …), EPIPE, and a
 * name lookup that failed for now (EAI_AGAIN; Go's resolver errors are net.Errors, retried too).
 */
const retryableNodeErrorCodes: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'EINTR',
  'EAGAIN',
  'EBUSY',
  'ENETDOWN',
  'ENETUNREACH',
  'ENETRESET',
  'ECONNABORTED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTDOWN',
  'EHOSTUNREACH',
  'EPIPE',
  'EAI_AGAIN',
]);

/**
 * Whether an operation that failed with `error` may succeed when tried again: a `GantryError` marked
 * `retryable`, or a Node.js network error (ECONNREFUSED, ECONNRESET, ETIMEDOUT, EHOSTUNREACH, …), also
 * when found in the `cause` chain. Digest or size mismatches and aborts are never retryable, wherever they appear.
 */
export function isRetryableError(error: unknown): boolean {
  let retryable = false;
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current !== undefined && current !== null; depth++) {
    if (
      hasErrorCode(current, ErrorCodes.DigestMismatch) ||
      hasErrorCode(current, ErrorCodes.SizeMismatch) ||
      hasErrorCode(current, ErrorCodes.Aborted)
    ) {
      return false;
    }
    if (current instanceof Error && current.name === 'AbortError') return false;
    if (isGantryError(current) && current.retryable) retryable = true;
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && retryableNodeErrorCodes.has(code)) retryable = true;
    current = (current as { cause?: unknown }).cause;
  }
  return retryable;
}

/** How an operation retries requests that fail with a retryable error (see `isRetryableError`). */
export interface RetrySettings {
  /** Retries after the first attempt; 0 = no retry. */
  retryTimes: number;
  /** Fixed delay; undefined = exponential backoff with jitter. */
  retryDelayMs: number | undefined;
  signal: AbortSignal | undefined;
  /** Called before each retry with its number (1-based), the error and the delay before it. */
  onRetry?: (attempt: number, error: Error, delayMs: number) => void;
}

/**
 * The delay before retry number `attempt` (1-based), as skopeo's (containers/common retry):
 * `fixedDelayMs` when given, otherwise 2^(attempt-1) seconds (1 s, 2 s, 4 s, …).
 */
export function retryDelay(attempt: number, fixedDelayMs: number | undefined): number {
  if (fixedDelayMs !== undefined) return Math.max(0, fixedDelayMs);
  return 1000 * 2 ** (attempt - 1);
}

/**
 * Runs `operation`, trying again up to `settings.retryTimes` times while it fails with a retryable
 * error (see `isRetryableError`), waiting between attempts (abortable through `settings.signal`).
 */
export async function withRetry<T>(operation: () => Promise<T>, settings: RetrySettings): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (settings.signal?.aborted) throw abortError(settings.signal);
      if (attempt > settings.retryTimes || !isRetryableError(error)) throw error;
      const delayMs = retryDelay(attempt, settings.retryDelayMs);
      settings.onRetry?.(attempt, error instanceof Error ? error : new Error(String(error)), delayMs);
      try {
        await sleep(delayMs, undefined, settings.signal ? { signal: settings.signal } : undefined);
      } catch {
        if (settings.signal?.aborted) throw abortError(settings.signal);
        throw error;
      }
    }
  }
}
