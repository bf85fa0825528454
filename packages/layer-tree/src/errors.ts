import { ErrorCodes, GantryError } from '@gantry/core/transport';

/** A `GantryError` with code `ERR_GANTRY_INVALID_LAYER`: the message names the entry. */
export function layerError(message: string, cause?: unknown): GantryError {
  return new GantryError(ErrorCodes.InvalidLayer, message, cause === undefined ? {} : { cause });
}
