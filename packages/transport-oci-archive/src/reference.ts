/**
 * `oci-archive:path[:reference]` references, with containers/image's rules (oci/archive/oci_transport.go
 * and oci/internal/oci_util.go):
 *
 * - The string is split at its FIRST ':' into the archive path and the image part, so the path cannot
 *   contain ':' and the image part may (`oci-archive:/a.tar:x:y` is image `x:y` in `/a.tar`).
 * - The image part is one of:
 *   - empty (`oci-archive:/a.tar` or `oci-archive:/a.tar:`): reading uses the only image of the
 *     archive's `index.json` (error when there are several); writing adds an entry without a name;
 *   - `@N`, N a non-negative integer: the N-th (zero-based) entry of `index.json`; for reading only;
 *   - a name matching the OCI `org.opencontainers.image.ref.name` grammar:
 *     `component(/component)*`, component = `[A-Za-z0-9]+` joined by one of `- . _ : @ +` or `--`.
 * - The path is resolved to an absolute path without symlinks when parsing (every directory but the
 *   last component must exist); files are read and written at that resolved path, as containers/image.
 * - The policy identity is the resolved archive path alone (the image name is not part of it, as in
 *   containers/image: `file:name` and `file:` may designate the same image).
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

/** True when `name` is a valid `org.opencontainers.image.ref.name` for `oci-archive:path:name`. */
export function isValidImageName(name: string): boolean {
  return imageNamePattern.test(name);
}

/** The parts of `oci-archive:` reference text, before the path is resolved. */
export interface OciArchiveReferenceElements {
  /** The archive path as written (may be relative). */
  path: string;
  /** The image name; '' when none. */
  imageName: string;
  /** The source index from `@N`; -1 when none. */
  sourceIndex: number;
}

function invalidReference(reference: string, reason: string, cause?: unknown): GantryError {
  return new GantryError(
    ErrorCodes.InvalidReference,
    `Invalid oci-archive: reference "${reference}": ${reason}`,
    cause === undefined ? {} : { cause },
  );
}

/**
 * Splits and validates `path[:reference]` without touching the file system. Throws
 * `ERR_GANTRY_INVALID_REFERENCE` naming the problem.
 */
export function parseReferenceElements(reference: string): OciArchiveReferenceElements {
  const colon = reference.indexOf(':');
  const archivePath = colon === -1 ? reference : reference.slice(0, colon);
  const image = colon === -1 ? '' : reference.slice(colon + 1);
  if (image.startsWith('@')) {
    const text = image.slice(1);
    if (!/^[+-]?\d+$/.test(text)) {
      throw invalidReference(reference, `invalid source index @${text}: not an integer`);
    }
    const index = Number(text);
    if (!Number.isSafeInteger(index)) {
      throw invalidReference(reference, `invalid source index @${text}: out of range`);
    }
    if (index < 0) throw invalidReference(reference, `invalid source index @${index}: must not be negative`);
    return { path: archivePath, imageName: '', sourceIndex: index };
  }
  if (image !== '' && !isValidImageName(image)) {
    throw invalidReference(
      reference,
      `invalid image name "${image}": expected components of letters and digits separated by "/", joined by one of "-._:@+" or "--"`,
    );
  }
  return { path: archivePath, imageName: image, sourceIndex: -1 };
}

/** What `OciArchiveReference` needs from its transport (to open sources and destinations). */
export interface OciArchiveReferenceBackend {
  newImageSource(reference: OciArchiveReference, context: TransportContext): Promise<ImageSource>;
  newImageDestination(reference: OciArchiveReference, context: TransportContext): Promise<ImageDestination>;
}

/**
 * An image in an OCI archive (a tar of an OCI image layout). `path` is the archive as the user wrote it;
 * `resolvedPath` (absolute, no symlinks, at parse time) is where it is read and written, and the policy
 * identity.
 */
export class OciArchiveReference implements ImageReference {
  readonly transport: Transport;
  /** The archive path as written by the user. */
  readonly path: string;
  /** The archive path, absolute and without symlinks (as it was when parsed). */
  readonly resolvedPath: string;
  /** The image name (`org.opencontainers.image.ref.name`); '' when none. */
  readonly imageName: string;
  /** The `@N` source index; -1 when none. */
  readonly sourceIndex: number;
  readonly #backend: OciArchiveReferenceBackend;

  constructor(
    transport: Transport,
    backend: OciArchiveReferenceBackend,
    elements: OciArchiveReferenceElements,
  ) {
    const text = `${elements.path}:${elements.sourceIndex === -1 ? elements.imageName : `@${elements.sourceIndex}`}`;
    if (elements.path.includes(':')) throw invalidReference(text, `path ${elements.path} contains a colon`);
    if (elements.imageName !== '' && !isValidImageName(elements.imageName)) {
      throw invalidReference(text, `invalid image name "${elements.imageName}"`);
    }
    if (elements.sourceIndex !== -1 && elements.imageName !== '') {
      throw invalidReference(
        text,
        `cannot set image ${elements.imageName} and index @${elements.sourceIndex} at the same time`,
      );
    }
    if (elements.sourceIndex < -1 || !Number.isSafeInteger(elements.sourceIndex)) {
      throw invalidReference(text, `index @${elements.sourceIndex} must not be negative`);
    }
    let resolvedPath: string;
    try {
      resolvedPath = resolvePathToFullyExplicit(elements.path);
    } catch (error) {
      throw invalidReference(text, describeFileSystemError(error), error);
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

  /** `oci-archive:` images have no docker reference. */
  dockerReference(): DockerReference | undefined {
    return undefined;
  }

  /** The resolved archive path (without the image name, as containers/image). */
  policyConfigurationIdentity(): string {
    return this.resolvedPath;
  }

  /** The archive path and each parent directory, most specific first, without `/`, as containers/image. */
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

  /** Deleting images from an archive is not supported (as containers/image): `ERR_GANTRY_NOT_SUPPORTED`. */
  async deleteImage(_context: TransportContext = {}): Promise<void> {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `Deleting images is not supported for oci-archive: images (${this.stringWithinTransport()})`,
    );
  }
}

/**
 * Validates a policy.json scope for `oci-archive:`, as containers/image's `internal.ValidateScope`: an
 * absolute path, not `/`, in canonical form. Throws `ERR_GANTRY_INVALID_REFERENCE` naming the problem.
 */
export function validatePolicyConfigurationScope(scope: string): void {
  const fail = (reason: string): never => {
    throw new GantryError(ErrorCodes.InvalidReference, `Invalid scope ${scope}: ${reason}`);
  };
  if (!scope.startsWith('/')) fail('must be an absolute path');
  if (scope === '/') fail('Use the generic default scope ""');
  const cleaned = cleanPath(scope);
  if (cleaned !== scope) fail(`Uses non-canonical path format, perhaps try with path ${cleaned}`);
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
