import { ErrorCodes, GantryError } from '../errors.js';
import type { TransportContext } from './contract.js';

/**
 * The settings `context.transportOptions[name]` gives the transport `name`: an object (empty when
 * absent). Throws `ERR_GANTRY_USAGE` when the entry is not an object, or when a member `kinds` names
 * has another type than the one given there (members not named are left to the transport).
 */
export function transportOptionsOf(
  context: TransportContext | undefined,
  name: string,
  kinds: Readonly<Record<string, 'string' | 'boolean' | 'number'>> = {},
): Readonly<Record<string, unknown>> {
  const entry = context?.transportOptions?.[name];
  if (entry === undefined) return {};
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw new GantryError(ErrorCodes.Usage, `transportOptions.${JSON.stringify(name)} must be an object`);
  }
  const options = entry as Record<string, unknown>;
  for (const [member, kind] of Object.entries(kinds)) {
    const value = options[member];
    if (value !== undefined && typeof value !== kind) {
      throw new GantryError(
        ErrorCodes.Usage,
        `transportOptions.${JSON.stringify(name)}.${member} must be a ${kind}, got ${JSON.stringify(value)}`,
      );
    }
  }
  return options;
}
