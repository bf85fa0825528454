import { type RetrySettings, withRetry } from '../copy/retry.js';
import type { ImageReference, ImageSource, TransportContext } from '../transport/contract.js';

/** Options shared by the image operations (`inspectImage`, `deleteImage`, `listTags`, …). */
export interface ImageOperationOptions {
  /**
   * Settings for the transport: platform (to choose from a manifest list), temporary directory,
   * configuration file locations and each transport's own options under `transportOptions`.
   */
  context?: TransportContext;
  /** Aborts the operation (rejects with `ERR_GANTRY_ABORTED`); default `context.signal`. */
  signal?: AbortSignal;
  /**
   * Retries of each request that fails with a retryable error (see `isRetryableError`); default none.
   * Its `signal` defaults to the operation's.
   */
  retry?: Partial<RetrySettings>;
}

/** The complete retry settings of an operation (no retry unless asked). */
export function retrySettingsOf(options: ImageOperationOptions): RetrySettings {
  const signal = options.retry?.signal ?? options.signal ?? options.context?.signal;
  const settings: RetrySettings = {
    retryTimes: options.retry?.retryTimes ?? 0,
    retryDelayMs: options.retry?.retryDelayMs,
    signal,
  };
  if (options.retry?.onRetry) settings.onRetry = options.retry.onRetry;
  return settings;
}

/**
 * The transport context with the operation's signal: the caller's context object itself when it
 * already has that signal (transports keep what they read from the user's configuration, registries.conf
 * and certificate directories, per context object, so `inspect`'s tag list reads none of it again),
 * else a copy with the signal.
 */
export function contextOf(options: ImageOperationOptions): TransportContext {
  const signal = options.signal ?? options.context?.signal;
  if (options.context !== undefined && options.context.signal === signal) return options.context;
  return signal ? { ...options.context, signal } : { ...options.context };
}

function isImageSource(value: ImageReference | ImageSource): value is ImageSource {
  return typeof (value as Partial<ImageSource>).getManifest === 'function';
}

/**
 * Runs `use` with a source for `image`: an open source is used as it is (and left open); a reference
 * is opened (with the retry settings) and closed afterwards.
 */
export async function withImageSource<T>(
  image: ImageReference | ImageSource,
  options: ImageOperationOptions,
  use: (source: ImageSource) => Promise<T>,
): Promise<T> {
  if (isImageSource(image)) return use(image);
  const context = contextOf(options);
  const source = await withRetry(() => image.newImageSource(context), retrySettingsOf(options));
  try {
    return await use(source);
  } finally {
    await source.close();
  }
}
