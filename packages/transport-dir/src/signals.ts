import {
  abortError,
  describeFileSystemError,
  ErrorCodes,
  GantryError,
  isGantryError,
} from '@gantry/core/transport';

/** Combines the context's signal and an operation's signal; undefined when there is neither. */
export function combineSignals(...signals: Array<AbortSignal | undefined>): AbortSignal | undefined {
  const present = signals.filter((signal): signal is AbortSignal => signal !== undefined);
  if (present.length <= 1) return present[0];
  return AbortSignal.any(present);
}

/**
 * Turns an error thrown during an operation into a Gantry error: the signal's abort error when the
 * signal fired, Gantry errors unchanged, anything else `ERR_GANTRY_INTERNAL` described as `what`.
 */
export function toGantryError(error: unknown, signal: AbortSignal | undefined, what: string): GantryError {
  if (signal?.aborted) return abortError(signal);
  if (isGantryError(error)) return error;
  return new GantryError(ErrorCodes.Internal, `${what}: ${describeFileSystemError(error)}`, { cause: error });
}
