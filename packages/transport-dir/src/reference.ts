import { readdir, readFile, rm, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  type DockerReference,
  describeFileSystemError,
  ErrorCodes,
  errorCode,
  GantryError,
  type ImageDestination,
  type ImageReference,
  type ImageSource,
  resolvePathToFullyExplicit,
  type Transport,
  type TransportContext,
  throwIfAborted,
} from '@gantry/core/transport';
import { openDirImageDestination } from './destination.js';
import {
  dirTransportVersion,
  isLayoutFileName,
  topLevelManifestFileName,
  versionFileName,
} from './layout.js';
import { openDirImageSource } from './source.js';

/** Settings of a `dir:` transport instance (see `createDirTransport`). */
export interface ResolvedDirTransportOptions {
  readonly fileMode: number;
  readonly directoryMode: number;
  readonly durable: boolean;
}

/**
 * A `dir:path` reference.
 *
 * - `path` is the path as written by the user (relative paths stay relative and are resolved against
 *   the working directory when the image is opened); it is what `stringWithinTransport()` returns.
 * - `resolvedPath` is the path made absolute with symbolic links resolved when the reference was
 *   parsed (the last component may be missing); it is the policy identity, and its parent
 *   directories (longest first, `/` excluded) are the policy namespaces.
 */
export class DirImageReference implements ImageReference {
  readonly transport: Transport;
  /** The path as given by the user. */
  readonly path: string;
  /** Absolute path without symlinks, resolved when the reference was parsed. */
  readonly resolvedPath: string;
  /** @internal */
  readonly options: ResolvedDirTransportOptions;

  /** @internal Use `transport.parseReference`. */
  constructor(
    transport: Transport,
    options: ResolvedDirTransportOptions,
    userPath: string,
    resolvedPath: string,
  ) {
    this.transport = transport;
    this.options = options;
    this.path = userPath;
    this.resolvedPath = resolvedPath;
    Object.freeze(this);
  }

  stringWithinTransport(): string {
    return this.path;
  }

  /** Always undefined: a directory has no docker reference. */
  dockerReference(): DockerReference | undefined {
    return undefined;
  }

  policyConfigurationIdentity(): string {
    return this.resolvedPath;
  }

  policyConfigurationNamespaces(): string[] {
    const namespaces: string[] = [];
    let current = this.resolvedPath;
    for (;;) {
      const lastSlash = current.lastIndexOf('/');
      if (lastSlash <= 0) break;
      current = current.slice(0, lastSlash);
      namespaces.push(current);
    }
    return namespaces;
  }

  /** The path of a file of the image directory (relative when the user's path is). */
  filePath(name: string): string {
    return path.join(this.path, name);
  }

  /** `dir:<path>`, for messages. */
  toString(): string {
    return `dir:${this.path}`;
  }

  newImageSource(context: TransportContext = {}): Promise<ImageSource> {
    return openDirImageSource(this, context);
  }

  newImageDestination(context: TransportContext = {}): Promise<ImageDestination> {
    return openDirImageDestination(this, context);
  }

  /**
   * Deletes the image. containers/image does not implement this ("Deleting images not implemented for
   * dir: images"); Gantry does, conservatively:
   * - the directory must hold `manifest.json`, else `ERR_GANTRY_IMAGE_NOT_FOUND`;
   * - it must hold the `version` file with the expected content, else `ERR_GANTRY_INVALID_LAYOUT`
   *   (the same rule that makes a destination refuse to overwrite the directory);
   * - `manifest.json` is removed first, so the image stops existing at once; then every other file whose
   *   name the layout uses (blobs, instance manifests, signatures, `version`); other files are left;
   * - finally the directory itself is removed if it is empty.
   */
  async deleteImage(context: TransportContext = {}): Promise<void> {
    throwIfAborted(context.signal);
    const manifestPath = this.filePath(topLevelManifestFileName);
    const versionPath = this.filePath(versionFileName);
    let version: string;
    try {
      version = await readFile(versionPath, 'utf8');
    } catch (error) {
      if (errorCode(error) !== 'ENOENT' && errorCode(error) !== 'ENOTDIR') {
        throw new GantryError(ErrorCodes.Internal, `${this}: ${describeFileSystemError(error)}`, {
          cause: error,
        });
      }
      version = '';
    }
    try {
      await stat(manifestPath);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        throw new GantryError(
          ErrorCodes.ImageNotFound,
          `${this}: no image to delete: ${describeFileSystemError(error)}`,
          {
            cause: error,
          },
        );
      }
      throw new GantryError(ErrorCodes.Internal, `${this}: ${describeFileSystemError(error)}`, {
        cause: error,
      });
    }
    if (version !== dirTransportVersion) {
      throw new GantryError(
        ErrorCodes.InvalidLayout,
        `${this}: not a containers image directory (no valid ${versionFileName} file), refusing to delete files in ${this.path}`,
      );
    }
    await rm(manifestPath);
    const names = await readdir(this.path || '.');
    for (const name of names) {
      if (name === versionFileName || !isLayoutFileName(name)) continue;
      throwIfAborted(context.signal);
      await rm(this.filePath(name), { force: true });
    }
    await rm(versionPath, { force: true });
    try {
      await rmdir(this.path || '.');
    } catch (error) {
      const code = errorCode(error);
      // Not empty (other files), or the working directory itself ('' / '.'): keep it.
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EINVAL' && code !== 'EBUSY') throw error;
    }
  }
}

/** Parses the part of `dir:path` after `dir:` (see `DirImageReference`). */
export function parseDirReference(
  transport: Transport,
  options: ResolvedDirTransportOptions,
  reference: string,
): DirImageReference {
  let resolved: string;
  try {
    resolved = resolvePathToFullyExplicit(reference);
  } catch (error) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid image name "dir:${reference}": ${describeFileSystemError(error)}`,
      { cause: error },
    );
  }
  return new DirImageReference(transport, options, reference, resolved);
}

/**
 * Checks a policy.json scope for `dir:` as containers/image does: it must be an absolute, clean path
 * (no `.`/`..` components, no doubled or trailing `/`), and not `/` itself (use the default scope "").
 */
export function validateDirPolicyConfigurationScope(scope: string): void {
  if (!scope.startsWith('/')) {
    throw new GantryError(ErrorCodes.InvalidReference, `Invalid scope ${scope}: Must be an absolute path`);
  }
  if (scope === '/') {
    throw new GantryError(ErrorCodes.InvalidReference, `Invalid scope "/": Use the generic default scope ""`);
  }
  const cleaned = path.posix.normalize(scope).replace(/(.)\/$/, '$1');
  if (cleaned !== scope) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid scope ${scope}: Uses non-canonical format, perhaps try ${cleaned}`,
    );
  }
}
