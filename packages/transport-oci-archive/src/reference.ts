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
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageReference,
  type ImageSource,
  type Transport,
  type TransportContext,
} from '@gantry/core/transport';
import {
  isValidImageName,
  LayoutReferenceBase,
  type LayoutReferenceElements,
  parseLayoutReferenceElements,
  validateLayoutPolicyScope,
} from '@gantry/oci-layout-format';

export { isValidImageName };

/** The parts of `oci-archive:` reference text, before the path is resolved. */
export type OciArchiveReferenceElements = LayoutReferenceElements;

/**
 * Splits and validates `path[:reference]` without touching the file system. Throws
 * `ERR_GANTRY_INVALID_REFERENCE` naming the problem.
 */
export function parseReferenceElements(reference: string): OciArchiveReferenceElements {
  return parseLayoutReferenceElements('oci-archive', reference);
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
export class OciArchiveReference extends LayoutReferenceBase implements ImageReference {
  readonly transport: Transport;
  readonly #backend: OciArchiveReferenceBackend;

  constructor(
    transport: Transport,
    backend: OciArchiveReferenceBackend,
    elements: OciArchiveReferenceElements,
  ) {
    super('oci-archive', elements);
    this.transport = transport;
    this.#backend = backend;
  }

  /** The resolved archive path (without the image name, as containers/image). */
  policyConfigurationIdentity(): string {
    return this.resolvedPath;
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
 * absolute path, not `/`, in canonical form (the whole scope is a path: the identity has no image name).
 * Throws `ERR_GANTRY_INVALID_REFERENCE` naming the problem.
 */
export function validatePolicyConfigurationScope(scope: string): void {
  validateLayoutPolicyScope(scope, { allowImageName: false });
}
