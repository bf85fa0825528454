/**
 * Reference rules shared by the transports over `docker save` archives (`docker-archive:`, `docker-daemon:`),
 * as containers/image has them:
 *
 * - a tag recorded in an archive is a normalised docker reference (`busybox` → `docker.io/library/busybox`)
 *   with `:latest` added when it has no tag; a reference with a digest cannot be recorded;
 * - both transports have no per-image policy scopes (identity '', no namespaces: only the default scope), and
 *   refuse deleting images.
 */
import {
  type DockerReference,
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageReference,
  type ImageSource,
  parseNormalizedNamed,
  type Transport,
  type TransportContext,
  tagNameOnly,
} from '@gantry/core/transport';

/** `ERR_GANTRY_INVALID_REFERENCE`: `Invalid <transport>: reference "<reference>": <reason>`. */
export function invalidReferenceError(
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
 * The tag an archive records for `reference`: `:latest` added to a name-only reference. Throws
 * `ERR_GANTRY_INVALID_REFERENCE` (`<refuser> doesn't support digest references: <reference>`) for a
 * reference with a digest.
 */
export function repoTagOf(reference: DockerReference, refuser = 'docker-archive'): DockerReference {
  const tagged = tagNameOnly(reference);
  if (tagged.digest !== undefined || tagged.tag === undefined) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `${refuser} doesn't support digest references: ${reference}`,
    );
  }
  return tagged;
}

/**
 * Parses a tag to record in an archive (normalised, see `repoTagOf`). Throws
 * `ERR_GANTRY_INVALID_REFERENCE` naming the problem; callers prefix the reference.
 */
export function parseRepoTag(text: string, refuser = 'docker-archive'): DockerReference {
  let parsed: DockerReference;
  try {
    parsed = parseNormalizedNamed(text);
  } catch (error) {
    throw new GantryError(ErrorCodes.InvalidReference, (error as Error).message, { cause: error });
  }
  return repoTagOf(parsed, refuser);
}

/** Opens sources and destinations for the references of one transport. */
export interface DockerArchiveReferenceBackendOf<Reference extends ImageReference> {
  newImageSource(reference: Reference, context: TransportContext): Promise<ImageSource>;
  newImageDestination(reference: Reference, context: TransportContext): Promise<ImageDestination>;
}

/**
 * The parts of a `docker-archive:` or `docker-daemon:` reference that do not depend on how it names the
 * image: no policy scopes but the default, sources and destinations opened by the transport's backend,
 * deleting refused (`ERR_GANTRY_NOT_SUPPORTED`).
 */
export abstract class DockerArchiveReferenceBase<Reference extends ImageReference> implements ImageReference {
  readonly transport: Transport;
  readonly #backend: DockerArchiveReferenceBackendOf<Reference>;

  constructor(transport: Transport, backend: DockerArchiveReferenceBackendOf<Reference>) {
    this.transport = transport;
    this.#backend = backend;
  }

  abstract stringWithinTransport(): string;
  abstract dockerReference(): DockerReference | undefined;

  /** The reference as the subclass type (this class is only ever extended by `Reference`). */
  get #self(): Reference {
    return this as unknown as Reference;
  }

  /** '' : no per-image policy scopes (as containers/image). */
  policyConfigurationIdentity(): string {
    return '';
  }

  policyConfigurationNamespaces(): string[] {
    return [];
  }

  newImageSource(context: TransportContext = {}): Promise<ImageSource> {
    return this.#backend.newImageSource(this.#self, context);
  }

  newImageDestination(context: TransportContext = {}): Promise<ImageDestination> {
    return this.#backend.newImageDestination(this.#self, context);
  }

  /** Not supported (as containers/image): `ERR_GANTRY_NOT_SUPPORTED`. */
  async deleteImage(): Promise<void> {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `Deleting images not implemented for ${this.transport.name}: images`,
    );
  }
}

/** Policy scopes: only the default '' exists; any other is refused with `ERR_GANTRY_INVALID_REFERENCE`. */
export function refusePolicyScope(transportName: string): never {
  throw new GantryError(
    ErrorCodes.InvalidReference,
    `${transportName}: does not support any scopes except the default "" one`,
  );
}
