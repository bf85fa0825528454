/**
 * The reference grammar of the OCI layout transports (`oci:path[:reference]` and
 * `oci-archive:path[:reference]`), with containers/image's rules (oci/internal/oci_util.go):
 *
 * - The string is split at its FIRST ':' into the path and the image part, so the path cannot contain
 *   ':' and the image part may (`/d:a:b` is image `a:b` in `/d`).
 * - The image part is one of:
 *   - empty (`/d` or `/d:`): reading uses the only image of `index.json`; writing adds an unnamed entry;
 *   - `@N`, N a non-negative integer: the N-th (zero-based) entry of `index.json`;
 *   - a name matching the OCI `org.opencontainers.image.ref.name` grammar:
 *     `component(/component)*`, component = `[A-Za-z0-9]+` joined by one of `- . _ : @ +` or `--`.
 * - The path is resolved to an absolute path without symlinks when the reference is built; every
 *   directory but the last must exist.
 */
import {
  type DockerReference,
  describeFileSystemError,
  ErrorCodes,
  GantryError,
  resolvePathToFullyExplicit,
} from '@gantry/core/transport';

const alphanumeric = '[A-Za-z0-9]+';
const separator = '(?:[-._:@+]|--)';
const component = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const imageNamePattern = new RegExp(`^${component}(?:/${component})*$`);

/** True when `name` is a valid `org.opencontainers.image.ref.name` (the `name` of `path:name`). */
export function isValidImageName(name: string): boolean {
  return imageNamePattern.test(name);
}

/** The parts of a layout reference's text, before the path is resolved. */
export interface LayoutReferenceElements {
  /** The path as written (may be relative, or empty for the current directory). */
  path: string;
  /** The image name; '' when none. */
  imageName: string;
  /** The source index from `@N`; -1 when none. */
  sourceIndex: number;
}

function invalidReference(
  transportName: string,
  reference: string,
  reason: string,
  cause?: unknown,
): GantryError {
  return new GantryError(
    ErrorCodes.InvalidReference,
    `Invalid ${transportName}: reference "${reference}": ${reason}`,
    cause === undefined ? {} : { cause },
  );
}

/**
 * Splits and validates `path[:reference]` without touching the file system. Throws
 * `ERR_GANTRY_INVALID_REFERENCE` (`Invalid <transportName>: reference "…": …`) naming the problem.
 */
export function parseLayoutReferenceElements(
  transportName: string,
  reference: string,
): LayoutReferenceElements {
  const colon = reference.indexOf(':');
  const layoutPath = colon === -1 ? reference : reference.slice(0, colon);
  const image = colon === -1 ? '' : reference.slice(colon + 1);
  if (image.startsWith('@')) {
    const text = image.slice(1);
    if (!/^[+-]?\d+$/.test(text)) {
      throw invalidReference(transportName, reference, `invalid source index @${text}: not an integer`);
    }
    const index = Number(text);
    if (!Number.isSafeInteger(index)) {
      throw invalidReference(transportName, reference, `invalid source index @${text}: out of range`);
    }
    if (index < 0) {
      throw invalidReference(
        transportName,
        reference,
        `invalid source index @${index}: must not be negative`,
      );
    }
    return { path: layoutPath, imageName: '', sourceIndex: index };
  }
  if (image !== '' && !isValidImageName(image)) {
    throw invalidReference(
      transportName,
      reference,
      `invalid image name "${image}": expected components of letters and digits separated by "/", joined by one of "-._:@+" or "--"`,
    );
  }
  return { path: layoutPath, imageName: image, sourceIndex: -1 };
}

/**
 * The state and transport-independent methods of a layout reference. The constructor checks the
 * elements (no ':' in the path, a valid name, not both a name and `@N`, N not negative) and resolves
 * the path (absolute, no symlinks, at construction time); it throws `ERR_GANTRY_INVALID_REFERENCE`
 * naming the problem. Subclasses add the transport, the policy identity and opening images.
 */
export abstract class LayoutReferenceBase {
  /** The path as written by the user. */
  readonly path: string;
  /** The path, absolute and without symlinks (as it was when the reference was built). */
  readonly resolvedPath: string;
  /** The image name (`org.opencontainers.image.ref.name`); '' when none. */
  readonly imageName: string;
  /** The `@N` source index; -1 when none. */
  readonly sourceIndex: number;

  constructor(transportName: string, elements: LayoutReferenceElements) {
    const text = `${elements.path}:${elements.sourceIndex === -1 ? elements.imageName : `@${elements.sourceIndex}`}`;
    if (elements.path.includes(':')) {
      throw invalidReference(transportName, text, `path ${elements.path} contains a colon`);
    }
    if (elements.imageName !== '' && !isValidImageName(elements.imageName)) {
      throw invalidReference(transportName, text, `invalid image name "${elements.imageName}"`);
    }
    if (elements.sourceIndex !== -1 && elements.imageName !== '') {
      throw invalidReference(
        transportName,
        text,
        `cannot set image ${elements.imageName} and index @${elements.sourceIndex} at the same time (cannot use both an image name and a source index)`,
      );
    }
    if (elements.sourceIndex < -1 || !Number.isSafeInteger(elements.sourceIndex)) {
      throw invalidReference(
        transportName,
        text,
        `source index @${elements.sourceIndex} must not be negative`,
      );
    }
    let resolvedPath: string;
    try {
      resolvedPath = resolvePathToFullyExplicit(elements.path);
    } catch (error) {
      // containers/image's words: the file-system error alone (`lstat /x: no such file or directory`).
      throw new GantryError(ErrorCodes.InvalidReference, describeFileSystemError(error), { cause: error });
    }
    this.path = elements.path;
    this.resolvedPath = resolvedPath;
    this.imageName = elements.imageName;
    this.sourceIndex = elements.sourceIndex;
  }

  /** `path:name`, `path:` (no name) or `path:@N`, as containers/image. */
  stringWithinTransport(): string {
    return this.sourceIndex === -1 ? `${this.path}:${this.imageName}` : `${this.path}:@${this.sourceIndex}`;
  }

  /**
   * Names the image the reference designates, as a whole noun phrase for messages: `image "name"`,
   * `image @N`, or `the only image` (so callers write `${describeImage()} not found`, never
   * `image ${describeImage()}`).
   */
  describeImage(): string {
    if (this.sourceIndex !== -1) return `image @${this.sourceIndex}`;
    return this.imageName === '' ? 'the only image' : `image "${this.imageName}"`;
  }

  /** Layout images have no docker reference. */
  dockerReference(): DockerReference | undefined {
    return undefined;
  }

  /**
   * The resolved path and each parent directory, most specific first, without `/` (which the generic
   * default scope '' already covers), as containers/image.
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
}

/** How `validateLayoutPolicyScope` reads a scope. */
export interface LayoutPolicyScopeOptions {
  /**
   * True when a scope may end with `:name` (`oci:`, whose policy identity includes the image name);
   * false when the whole scope is a path (`oci-archive:`, whose identity is the path alone).
   */
  allowImageName: boolean;
}

/**
 * Validates a policy.json scope of a layout transport, as containers/image's `internal.ValidateScope`:
 * an absolute, clean path other than `/`, followed (when `allowImageName`) by an optional `:name` with a
 * valid image name. Throws `ERR_GANTRY_INVALID_REFERENCE` (`Invalid scope …: …`) naming the problem.
 */
export function validateLayoutPolicyScope(scope: string, options: LayoutPolicyScopeOptions): void {
  const colon = options.allowImageName ? scope.indexOf(':') : -1;
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
export function cleanPath(input: string): string {
  const parts: string[] = [];
  for (const part of input.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return `/${parts.join('/')}`;
}
