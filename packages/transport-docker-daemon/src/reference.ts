/**
 * `docker-daemon:` references, with containers/image's rules (docker/daemon/daemon_transport.go):
 *
 * - a digest (`sha256:<64 hex>`) is an image ID; any other digest algorithm is refused;
 * - otherwise a docker reference, normalised (`busybox:1` → `docker.io/library/busybox:1`), which must have
 *   a tag or a digest (name-only is refused, no `:latest` is added) and not both; the repository name
 *   `sha256` is reserved for image IDs;
 * - `stringWithinTransport()` is the image ID or the familiar form of the name (`busybox:1`), which is also
 *   what is sent to the Engine API;
 * - policy identity '' and no namespaces: image IDs make per-image scopes meaningless, so only the default
 *   scope exists (as containers/image).
 */
import {
  type Digest,
  type DockerReference,
  ErrorCodes,
  familiarName,
  familiarString,
  GantryError,
  type ImageDestination,
  type ImageReference,
  type ImageSource,
  isNameOnly,
  parseNormalizedNamed,
  type Transport,
  type TransportContext,
} from '@gantry/core';

function invalidReference(reference: string, reason: string, cause?: unknown): GantryError {
  return new GantryError(
    ErrorCodes.InvalidReference,
    `Invalid docker-daemon: reference "${reference}": ${reason}`,
    cause === undefined ? {} : { cause },
  );
}

/** The parts of a `docker-daemon:` reference: exactly one of them is set. */
export interface DockerDaemonReferenceElements {
  /** An image ID (`sha256:<hex>`). */
  imageId?: Digest;
  /** A normalised name with a tag or a digest. */
  name?: DockerReference;
}

/** Valid digests of the algorithms go-digest knows (anything else is parsed as a name, as containers/image). */
const validDigest = /^(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$/;

/** Parses the part after `docker-daemon:`; throws `ERR_GANTRY_INVALID_REFERENCE` naming the problem. */
export function parseReferenceElements(reference: string): DockerDaemonReferenceElements {
  if (validDigest.test(reference)) {
    if (!reference.startsWith('sha256:')) {
      throw invalidReference(reference, 'only digest algorithm sha256 accepted');
    }
    return { imageId: reference as Digest };
  }
  let name: DockerReference;
  try {
    name = parseNormalizedNamed(reference);
  } catch (error) {
    throw invalidReference(reference, (error as Error).message, error);
  }
  if (familiarName(name) === 'sha256') {
    throw invalidReference(
      reference,
      'The sha256 repository name is reserved for (non-shortened) digest references',
    );
  }
  return { name };
}

/** What `DockerDaemonReference` needs from its transport. */
export interface DockerDaemonReferenceBackend {
  newImageSource(reference: DockerDaemonReference, context: TransportContext): Promise<ImageSource>;
  newImageDestination(reference: DockerDaemonReference, context: TransportContext): Promise<ImageDestination>;
}

/** An image in a Docker Engine, named by `name:tag`, `name@digest` or image ID. */
export class DockerDaemonReference implements ImageReference {
  readonly transport: Transport;
  readonly imageId: Digest | undefined;
  readonly name: DockerReference | undefined;
  readonly #backend: DockerDaemonReferenceBackend;

  constructor(
    transport: Transport,
    backend: DockerDaemonReferenceBackend,
    elements: DockerDaemonReferenceElements,
  ) {
    if ((elements.imageId === undefined) === (elements.name === undefined)) {
      throw new GantryError(
        ErrorCodes.InvalidReference,
        'docker-daemon: reference must have exactly one of an image ID and a name',
      );
    }
    if (elements.name) {
      if (isNameOnly(elements.name)) {
        throw new GantryError(
          ErrorCodes.InvalidReference,
          `docker-daemon: reference ${familiarString(elements.name)} has neither a tag nor a digest`,
        );
      }
      if (elements.name.tag !== undefined && elements.name.digest !== undefined) {
        throw new GantryError(
          ErrorCodes.InvalidReference,
          'docker-daemon: references with both a tag and digest are currently not supported',
        );
      }
    }
    this.transport = transport;
    this.#backend = backend;
    this.imageId = elements.imageId;
    this.name = elements.name;
  }

  /** The image ID, or the familiar form of the name (`busybox:latest`, `example.com/a:b`). */
  stringWithinTransport(): string {
    return this.imageId ?? familiarString(this.name!);
  }

  dockerReference(): DockerReference | undefined {
    return this.name;
  }

  /** '' : `docker-daemon:` has no per-image policy scopes (as containers/image). */
  policyConfigurationIdentity(): string {
    return '';
  }

  policyConfigurationNamespaces(): string[] {
    return [];
  }

  newImageSource(context: TransportContext = {}): Promise<ImageSource> {
    return this.#backend.newImageSource(this, context);
  }

  newImageDestination(context: TransportContext = {}): Promise<ImageDestination> {
    return this.#backend.newImageDestination(this, context);
  }

  /** Not supported (as containers/image): `ERR_GANTRY_NOT_SUPPORTED`. */
  async deleteImage(): Promise<void> {
    throw new GantryError(
      ErrorCodes.NotSupported,
      'Deleting images not implemented for docker-daemon: images',
    );
  }
}

/** Policy scopes: only the default '' exists for `docker-daemon:`; any other is refused. */
export function validatePolicyConfigurationScope(_scope: string): void {
  throw new GantryError(
    ErrorCodes.InvalidReference,
    'docker-daemon: does not support any scopes except the default "" one',
  );
}
