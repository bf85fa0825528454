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
  isNameOnly,
  parseNormalizedNamed,
  type Transport,
} from '@gantry/core/transport';
import {
  type DockerArchiveReferenceBackendOf,
  DockerArchiveReferenceBase,
  invalidReferenceError,
  refusePolicyScope,
} from '@gantry/docker-save-format';

function invalidReference(reference: string, reason: string, cause?: unknown) {
  return invalidReferenceError('docker-daemon', reference, reason, cause);
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
export type DockerDaemonReferenceBackend = DockerArchiveReferenceBackendOf<DockerDaemonReference>;

/** An image in a Docker Engine, named by `name:tag`, `name@digest` or image ID. */
export class DockerDaemonReference extends DockerArchiveReferenceBase<DockerDaemonReference> {
  readonly imageId: Digest | undefined;
  readonly name: DockerReference | undefined;

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
    super(transport, backend);
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
}

/** Policy scopes: only the default '' exists for `docker-daemon:`; any other is refused. */
export function validatePolicyConfigurationScope(_scope: string): void {
  refusePolicyScope('docker-daemon');
}
