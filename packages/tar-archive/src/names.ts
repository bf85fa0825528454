/**
 * Entry names inside a tar archive, normalised so that lookups and safety checks do not depend on how a
 * tool spelled a name (`./manifest.json`, `blobs//sha256/x`, `dir/`).
 */
import path from 'node:path';
import { ErrorCodes, GantryError } from '@gantry/core/transport';

/** The name of the archive's root directory entry (`./` in `tar -C dir .` archives). */
export const rootEntryName = '.';

function invalidName(name: string, reason: string): GantryError {
  return new GantryError(ErrorCodes.InvalidLayout, `invalid tar entry "${name}": ${reason}`);
}

/**
 * Normalises an entry name: removes `.` components, repeated and trailing `/`. The archive's root
 * (`./`, `.`) becomes `.`. Throws `ERR_GANTRY_INVALID_LAYOUT` naming the entry when the name is absolute,
 * contains a `..` component, contains a NUL byte, or is empty.
 */
export function normalizeEntryName(name: string): string {
  if (name === '') throw invalidName(name, 'empty name');
  if (name.includes('\0')) throw invalidName(name, 'name contains a NUL byte');
  if (name.startsWith('/')) throw invalidName(name, 'absolute path');
  const components: string[] = [];
  for (const component of name.split('/')) {
    if (component === '' || component === '.') continue;
    if (component === '..') throw invalidName(name, 'path contains a ".." component');
    components.push(component);
  }
  return components.length === 0 ? rootEntryName : components.join('/');
}

/**
 * Where a symbolic link named `name` (normalised) with target `target` points, as a normalised entry name.
 * Throws `ERR_GANTRY_INVALID_LAYOUT` naming the entry when the target is absolute or leaves the archive's
 * root.
 */
export function resolveSymlinkTarget(name: string, target: string): string {
  if (target === '') throw invalidName(name, 'symbolic link with an empty target');
  if (target.startsWith('/')) throw invalidName(name, `symbolic link to an absolute path "${target}"`);
  const directory = path.posix.dirname(name);
  const joined = path.posix.normalize(path.posix.join(directory, target));
  if (joined === '..' || joined.startsWith('../') || joined.startsWith('/')) {
    throw invalidName(name, `symbolic link "${target}" points outside the archive`);
  }
  return normalizeEntryName(joined);
}

/**
 * The entry a hard link named `name` with target `target` refers to (tar hard link targets are relative
 * to the archive's root). Throws `ERR_GANTRY_INVALID_LAYOUT` naming the entry when the target is absolute
 * or leaves the archive.
 */
export function resolveHardlinkTarget(name: string, target: string): string {
  if (target === '') throw invalidName(name, 'hard link with an empty target');
  if (target.startsWith('/')) throw invalidName(name, `hard link to an absolute path "${target}"`);
  const components = target.split('/');
  if (components.includes('..')) throw invalidName(name, `hard link "${target}" points outside the archive`);
  return normalizeEntryName(target);
}
