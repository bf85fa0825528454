import {
  type DockerReference,
  describeFileSystemError,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageReference,
  type ImageSource,
  isNameOnly,
  parseNormalizedNamed,
  resolvePathToFullyExplicit,
  type Transport,
  type TransportContext,
} from '@gantry/core/transport';
import { cleanPath } from '@gantry/layer-tree';

/** The repository used when a reference names none. */
export const defaultOstreeRepository = '/ostree/repo';

/** Prefix of every branch the transport writes. */
export const branchPrefix = 'ociimage';

/** containers/image's `encodeOStreeRef`: each byte outside `[A-Za-z0-9.-]` becomes `_XX` (uppercase hex). */
export function encodeOstreeRef(image: string): string {
  let encoded = '';
  for (const byte of Buffer.from(image, 'utf8')) {
    const character = String.fromCharCode(byte);
    encoded += /^[A-Za-z0-9.-]$/.test(character)
      ? character
      : `_${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return encoded;
}

/** The branch holding a blob (layer or config): `ociimage/<hex>`. */
export function blobBranch(digest: string): string {
  const hex = digest.slice(digest.indexOf(':') + 1);
  if (!/^[0-9a-f]{64,128}$/.test(hex)) {
    throw new GantryError(ErrorCodes.InvalidDigest, `invalid blob digest "${digest}"`);
  }
  return `${branchPrefix}/${hex}`;
}

export interface OstreeReferenceHooks {
  newImageSource(reference: OstreeImageReference, context: TransportContext): Promise<ImageSource>;
  newImageDestination(reference: OstreeImageReference, context: TransportContext): Promise<ImageDestination>;
  deleteImage(reference: OstreeImageReference, context: TransportContext): Promise<void>;
}

/** `ostree:IMAGE[@/absolute/repo/path]`. */
export class OstreeImageReference implements ImageReference {
  /** IMAGE with `:latest` added when it has neither tag nor digest. */
  readonly image: string;
  /** `ociimage/<encoded image>`. */
  readonly imageBranch: string;
  /** The repository path, made absolute with symbolic links resolved. */
  readonly repository: string;

  constructor(
    readonly transport: Transport,
    private readonly hooks: OstreeReferenceHooks,
    image: string,
    repository: string,
  ) {
    this.image = image;
    this.imageBranch = `${branchPrefix}/${encodeOstreeRef(image)}`;
    this.repository = repository;
  }

  stringWithinTransport(): string {
    return `${this.image}@${this.repository}`;
  }

  toString(): string {
    return `ostree:${this.stringWithinTransport()}`;
  }

  dockerReference(): DockerReference | undefined {
    return undefined;
  }

  policyConfigurationIdentity(): string {
    return `${this.repository}:${this.image}`;
  }

  policyConfigurationNamespaces(): string[] {
    // As containers/image: the name is IMAGE up to its first ':'.
    let name = this.image.slice(0, this.image.indexOf(':'));
    const namespaces: string[] = [];
    for (;;) {
      namespaces.push(`${this.repository}:${name}`);
      const slash = name.lastIndexOf('/');
      if (slash === -1) break;
      name = name.slice(0, slash);
    }
    return namespaces;
  }

  newImageSource(context: TransportContext = {}): Promise<ImageSource> {
    return this.hooks.newImageSource(this, context);
  }

  newImageDestination(context: TransportContext = {}): Promise<ImageDestination> {
    return this.hooks.newImageDestination(this, context);
  }

  deleteImage(context: TransportContext = {}): Promise<void> {
    return this.hooks.deleteImage(this, context);
  }
}

/** Parses `IMAGE[@/absolute/repo/path]` as containers/image's ostree transport did. */
export function parseOstreeReference(
  transport: Transport,
  hooks: OstreeReferenceHooks,
  reference: string,
): OstreeImageReference {
  const separator = reference.indexOf('@/');
  let image = separator === -1 ? reference : reference.slice(0, separator);
  const repository = separator === -1 ? defaultOstreeRepository : `/${reference.slice(separator + 2)}`;
  const named = parseNormalizedNamed(image);
  if (isNameOnly(named)) image = `${image}:latest`;
  let resolved: string;
  try {
    resolved = resolvePathToFullyExplicit(repository);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ENOENT' && repository === defaultOstreeRepository) {
      resolved = repository;
    } else {
      throw new GantryError(
        ErrorCodes.InvalidReference,
        `Invalid OSTree reference ${image}@${repository}: ${code ? describeFileSystemError(error) : (error as Error).message}`,
        { cause: error },
      );
    }
  }
  if (resolved.includes(':')) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid OSTree reference ${image}@${repository}: path ${resolved} contains a colon`,
    );
  }
  return new OstreeImageReference(transport, hooks, image, resolved);
}

/** A policy.json scope: `/absolute/clean/repo:IMAGE-prefix`. */
export function validateOstreePolicyConfigurationScope(scope: string): void {
  const separator = scope.indexOf(':');
  if (separator < 0) {
    throw new GantryError(ErrorCodes.InvalidReference, `Invalid ostree: scope ${scope}: Must include a repo`);
  }
  const repository = scope.slice(0, separator);
  if (!repository.startsWith('/')) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid ostree: scope ${scope}: repository must be an absolute path`,
    );
  }
  const cleaned = cleanPath(repository);
  if (cleaned !== repository) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid ostree: scope ${scope}: Uses non-canonical path format, perhaps try with path ${cleaned}`,
    );
  }
}
