/**
 * `oci:path[:reference]` references, with containers/image's rules (oci/layout/oci_transport.go and
 * oci/internal/oci_util.go):
 *
 * - The string is split at its FIRST ':' into the layout path and the image part, so the path cannot
 *   contain ':' and the image part may (`oci:/d:a:b` is image `a:b` in `/d`).
 * - The image part is one of:
 *   - empty (`oci:/d` or `oci:/d:`): reading uses the only image of `index.json` (error when there are
 *     several); writing adds an entry without a name;
 *   - `@N`, N a non-negative integer: the N-th (zero-based) entry of `index.json`; valid for reading and
 *     deleting only;
 *   - a name matching the OCI `org.opencontainers.image.ref.name` grammar:
 *     `component(/component)*`, component = `[A-Za-z0-9]+` joined by one of `- . _ : @ +` or `--`.
 * - The path is resolved to an absolute path without symlinks when parsing; every directory but the
 *   last must exist.
 */
import {
  type DockerReference,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageReference,
  type ImageSource,
  type Transport,
  type TransportContext,
} from '@gantry/core';
import { describeFileSystemError, resolvePathToFullyExplicit } from './file-system.js';

const alphanumeric = '[A-Za-z0-9]+';
const separator = '(?:[-._:@+]|--)';
const component = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const imageNamePattern = new RegExp(`^${component}(?:/${component})*$`);

/** True when `name` is a valid `org.opencontainers.image.ref.name` for `oci:path:name`. */
export function isValidImageName(name: string): boolean {
  return imageNamePattern.test(name);
}

/** The parts of `oci:` reference text, before the path is resolved. */
export interface OciReferenceElements {
  /** The layout path as written (may be relative, or empty for the current directory). */
  path: string;
  /** The image name; '' when none. */
  imageName: string;
  /** The source index from `@N`; -1 when none. */
  sourceIndex: number;
}

function invalidReference(reference: string, reason: string, cause?: unknown): GantryError {
  return new GantryError(
    ErrorCodes.InvalidReference,
    `Invalid oci: reference "${reference}": ${reason}`,
    cause === undefined ? {} : { cause },
  );
}

/**
 * Splits and validates `path[:reference]` without touching the file system. Throws
 * `ERR_GANTRY_INVALID_REFERENCE` naming the problem.
 */
export function parseReferenceElements(reference: string): OciReferenceElements {
  const colon = reference.indexOf(':');
  const layoutPath = colon === -1 ? reference : reference.slice(0, colon);
  const image = colon === -1 ? '' : reference.slice(colon + 1);
  if (image.startsWith('@')) {
    const text = image.slice(1);
    if (!/^[+-]?\d+$/.test(text)) {
      throw invalidReference(reference, `invalid source index @${text}: not an integer`);
    }
    const index = Number(text);
    if (!Number.isSafeInteger(index))
      throw invalidReference(reference, `invalid source index @${text}: out of range`);
    if (index < 0) throw invalidReference(reference, `invalid source index @${index}: must not be negative`);
    return { path: layoutPath, imageName: '', sourceIndex: index };
  }
  if (image !== '' && !isValidImageName(image)) {
    throw invalidReference(
      reference,
      `invalid image name "${image}": expected components of letters and digits separated by "/", joined by one of "-._:@+" or "--"`,
    );
  }
  return { path: layoutPath, imageName: image, sourceIndex: -1 };
}

/** What `OciReference` needs from its transport (to open sources and destinations). */
export interface OciReferenceBackend {
  newImageSource(reference: OciReference, context: TransportContext): Promise<ImageSource>;
  newImageDestination(reference: OciReference, context: TransportContext): Promise<ImageDestination>;
  deleteImage(reference: OciReference, context: TransportContext): Promise<void>;
}

/**
 * An image in an OCI layout. `path` is used for file-system access as the user wrote it; `resolvedPath`
 * (absolute, no symlinks, at parse time) for policy identities.
 */
export class OciReference implements ImageReference {
  readonly transport: Transport;
  /** The layout directory as written by the user. */
  readonly path: string;
  /** The layout directory, absolute and without symlinks (as it was when parsed). */
  readonly resolvedPath: string;
  /** The image name (`org.opencontainers.image.ref.name`); '' when none. */
  readonly imageName: string;
  /** The `@N` source index; -1 when none. */
  readonly sourceIndex: number;
  readonly #backend: OciReferenceBackend;

  constructor(transport: Transport, backend: OciReferenceBackend, elements: OciReferenceElements) {
    if (elements.path.includes(':')) {
      throw invalidReference(
        `${elements.path}:${elements.imageName}`,
        `path ${elements.path} contains a colon`,
      );
    }
    if (elements.imageName !== '' && !isValidImageName(elements.imageName)) {
      throw invalidReference(
        `${elements.path}:${elements.imageName}`,
        `invalid image name "${elements.imageName}"`,
      );
    }
    if (elements.sourceIndex !== -1 && elements.imageName !== '') {
      throw invalidReference(
        `${elements.path}:${elements.imageName}`,
        `cannot use both an image name ${elements.imageName} and a source index @${elements.sourceIndex}`,
      );
    }
    if (elements.sourceIndex < -1 || !Number.isSafeInteger(elements.sourceIndex)) {
      throw invalidReference(
        `${elements.path}:@${elements.sourceIndex}`,
        'the source index must not be negative',
      );
    }
    let resolvedPath: string;
    try {
      resolvedPath = resolvePathToFullyExplicit(elements.path);
    } catch (error) {
      throw invalidReference(
        `${elements.path}${elements.sourceIndex === -1 ? `:${elements.imageName}` : `:@${elements.sourceIndex}`}`,
        describeFileSystemError(error),
        error,
      );
    }
    this.transport = transport;
    this.#backend = backend;
    this.path = elements.path;
    this.resolvedPath = resolvedPath;
    this.imageName = elements.imageName;
    this.sourceIndex = elements.sourceIndex;
  }

  /** `path:name`, `path:` (no name) or `path:@N`, as containers/image. */
  stringWithinTransport(): string {
    return this.sourceIndex === -1 ? `${this.path}:${this.imageName}` : `${this.path}:@${this.sourceIndex}`;
  }

  /** Describes the image part for messages: `"name"`, `@N`, or `the only image`. */
  describeImage(): string {
    if (this.sourceIndex !== -1) return `@${this.sourceIndex}`;
    return this.imageName === '' ? 'the only image' : `"${this.imageName}"`;
  }

  /** `oci:` images have no docker reference. */
  dockerReference(): DockerReference | undefined {
    return undefined;
  }

  /**
   * `resolvedPath:name` when the reference names an image, else `resolvedPath` (for `path`, `path:` and
   * `path:@N`, which name no stable image). containers-policy.json(5) documents `directory:tag` scopes
   * for `oci:`; the directory itself comes first in `policyConfigurationNamespaces`.
   */
  policyConfigurationIdentity(): string {
    return this.imageName === '' ? this.resolvedPath : `${this.resolvedPath}:${this.imageName}`;
  }

  /**
   * The layout directory and each parent directory, most specific first, without `/` (which the
   * generic default scope '' already covers), as containers/image.
   */
  policyConfigurationNamespaces(): string[] {
    const namespaces: string[] = [];
    let current = this.resolvedPath;
    for (;;) {
      const lastSlash = current.lastIndexOf('/');
      if (lastSlash === -1 || current === '/') break;
      namespaces.push(current);
      current = current.slice(0, lastSlash);
    }
    return namespaces;
  }

  newImageSource(context: TransportContext = {}): Promise<ImageSource> {
    return this.#backend.newImageSource(this, context);
  }

  newImageDestination(context: TransportContext = {}): Promise<ImageDestination> {
    return this.#backend.newImageDestination(this, context);
  }

  deleteImage(context: TransportContext = {}): Promise<void> {
    return this.#backend.deleteImage(this, context);
  }
}

/**
 * Validates a policy.json scope for `oci:`: an absolute, clean path other than `/`, optionally followed
 * by `:name` with a valid image name. Throws `ERR_GANTRY_INVALID_REFERENCE` naming the problem.
 */
export function validatePolicyConfigurationScope(scope: string): void {
  const colon = scope.indexOf(':');
  const directory = colon === -1 ? scope : scope.slice(0, colon);
  const imageName = colon === -1 ? undefined : scope.slice(colon + 1);
  const fail = (reason: string): never => {
    throw new GantryError(ErrorCodes.InvalidReference, `Invalid scope ${scope}: ${reason}`);
  };
  if (!directory.startsWith('/')) fail('must be an absolute path');
  if (directory === '/') fail('Use the generic default scope ""');
  const cleaned = cleanPath(directory);
  if (cleaned !== directory) fail(`Uses non-canonical path format, perhaps try with path ${cleaned}`);
  if (imageName !== undefined && !isValidImageName(imageName)) fail(`invalid image name "${imageName}"`);
}

/** Go's `filepath.Clean` for absolute POSIX paths. */
function cleanPath(input: string): string {
  const parts: string[] = [];
  for (const part of input.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return `/${parts.join('/')}`;
}
