/**
 * Transport-agnostic file-system helpers: the error code of a Node.js system error, its description in
 * Go's wording (what skopeo users see), and containers/image's `explicitfilepath.ResolvePathToFullyExplicit`
 * used by the path-based transports (`dir:`, `oci:`, `oci-archive:` …) to name a location for policy.
 */
import { lstatSync, readlinkSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';

/** The error code of a Node.js system error (`ENOENT`…), if it is one; else `undefined`. */
export function errorCode(error: unknown): string | undefined {
  return error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
}

/**
 * Go's wording (its `syscall.Errno` strings on Linux) for the error codes whose libuv description differs;
 * every other code's libuv description is already Go's.
 */
const goErrorDescriptions: Readonly<Record<string, string>> = {
  EBUSY: 'device or resource busy',
  EEXIST: 'file exists',
  EIO: 'input/output error',
  EISDIR: 'is a directory',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
  ENOTSUP: 'operation not supported',
  ETXTBSY: 'text file busy',
  EXDEV: 'invalid cross-device link',
};

/**
 * Describes a Node.js file-system error the way Go's `*PathError` does (`lstat /x: no such file or
 * directory`), which is what skopeo users see. A system error naming its syscall and path becomes
 * `<syscall> <path>: <description>`, the description in Go's wording; any other `Error` gives its
 * message, anything else `String(error)`.
 */
export function describeFileSystemError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const systemError = error as NodeJS.ErrnoException;
  const description = /^[A-Z0-9_]+: (.*?)(?:, [a-z_]+(?: '.*')?)?$/s.exec(systemError.message)?.[1];
  if (systemError.syscall && systemError.path !== undefined && description) {
    const goDescription = systemError.code === undefined ? undefined : goErrorDescriptions[systemError.code];
    return `${systemError.syscall} ${systemError.path}: ${goDescription ?? description}`;
  }
  return systemError.message;
}

/**
 * Creates `directory` and its missing parents, as Go's `os.MkdirAll`, and resolves the directories it
 * created, outermost first (empty when `directory` already existed).
 *
 * Use this instead of `mkdir(…, { recursive: true })`: Node's recursive mkdir reports ENOENT for
 * failures it meets on the way (on a read-only file system it says `mkdir /ro/x: no such file or
 * directory` where the system said EROFS). Here every error is the system's own, from the `mkdir` that
 * failed (`mkdir /ro/x: read-only file system` once worded by `describeFileSystemError`); an existing
 * non-directory fails with ENOTDIR (`mkdir /x: not a directory`), as Go's.
 */
export async function makeDirectories(directory: string, mode = 0o777): Promise<string[]> {
  try {
    await mkdir(directory, { mode });
    return [directory];
  } catch (error) {
    const code = errorCode(error);
    if (code === 'EEXIST') {
      if (await isDirectory(directory)) return [];
      throw notADirectory(directory);
    }
    if (code !== 'ENOENT') throw error;
  }
  const parent = path.dirname(directory);
  if (parent === directory) throw notADirectory(directory);
  const created = await makeDirectories(parent, mode);
  try {
    await mkdir(directory, { mode });
  } catch (error) {
    // Created meanwhile by someone else: fine, as Go's MkdirAll.
    if (errorCode(error) === 'EEXIST' && (await isDirectory(directory))) return created;
    throw error;
  }
  return [...created, directory];
}

async function isDirectory(candidate: string): Promise<boolean> {
  try {
    return (await stat(candidate)).isDirectory();
  } catch {
    return false;
  }
}

/** Go's `&PathError{Op: "mkdir", Path, Err: syscall.ENOTDIR}`, as a Node.js system error. */
function notADirectory(directory: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${directory}'`), {
    code: 'ENOTDIR',
    errno: -20,
    syscall: 'mkdir',
    path: directory,
  });
}

/** How many symbolic links `evaluateSymbolicLinks` follows before giving up, as Go's `filepath.EvalSymlinks`. */
const maximumSymbolicLinks = 255;

/**
 * `absolute` (an absolute path) without symbolic links, walked component by component as Go's
 * `filepath.EvalSymlinks` does, so that failures are Go's: the `lstat` error of the first component that
 * cannot be examined (`lstat /x/target: no such file or directory` for a dangling symlink), or
 * `EvalSymlinks: too many links`, or a bare `not a directory` (code `ENOTDIR`) when a non-directory is
 * followed by more components. `..` after a symbolic link applies to the link's target.
 */
function evaluateSymbolicLinks(absolute: string): string {
  let resolved = '/';
  const pending = absolute.split('/').reverse();
  let linksFollowed = 0;
  while (pending.length > 0) {
    const component = pending.pop()!;
    if (component === '' || component === '.') continue;
    if (component === '..') {
      resolved = path.dirname(resolved);
      continue;
    }
    const candidate = path.join(resolved, component);
    const stats = lstatSync(candidate);
    if (!stats.isSymbolicLink()) {
      if (!stats.isDirectory() && pending.length > 0) {
        // Go returns a bare syscall.ENOTDIR here, even when only `..` follows.
        throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      }
      resolved = candidate;
      continue;
    }
    linksFollowed += 1;
    if (linksFollowed > maximumSymbolicLinks) throw new Error('EvalSymlinks: too many links');
    const target = readlinkSync(candidate);
    if (target.startsWith('/')) resolved = '/';
    pending.push(...target.split('/').reverse());
  }
  return resolved;
}

/**
 * An existing path made absolute (`..` resolved lexically, as Go's `filepath.Abs` does), then without
 * symbolic links.
 */
function resolveExistingPathToFullyExplicit(input: string): string {
  return evaluateSymbolicLinks(path.resolve(input));
}

/**
 * Converts `input` into an absolute, cleaned path without symbolic links, like containers/image's
 * `explicitfilepath.ResolvePathToFullyExplicit`:
 * - `''` means the current directory; relative paths are resolved against it;
 * - `..` is resolved lexically first (as Go's `filepath.Abs` does), then symbolic links are resolved;
 * - every component must exist, except that the last one may be missing (but not be a dangling symlink);
 *   a missing last component is kept as written, and its parent (everything up to the last `/`, so a
 *   trailing `/` makes the whole path the parent) must exist.
 *
 * Throws the underlying Node.js file-system error (`describeFileSystemError` words it as Go does, e.g.
 * `lstat /x: no such file or directory`) when a parent is missing or is not a directory, when the path
 * is a dangling symlink, or when the path cannot be examined; and an `Error` when a missing last
 * component is `.` or `..`.
 */
export function resolvePathToFullyExplicit(input: string): string {
  let exists: boolean;
  try {
    lstatSync(input);
    exists = true;
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
    exists = false; // includes '' (Go's os.Lstat("") fails with ENOENT too)
  }
  if (exists) return resolveExistingPathToFullyExplicit(input);
  const slash = input.lastIndexOf('/');
  const parent = input.slice(0, slash + 1);
  const file = input.slice(slash + 1);
  const resolvedParent = resolveExistingPathToFullyExplicit(parent);
  if (file === '.' || file === '..') {
    throw new Error(`Unexpectedly missing special filename component in ${input}`);
  }
  return path.join(resolvedParent, file);
}
