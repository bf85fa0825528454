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
import type {
  ImageDestination,
  ImageReference,
  ImageSource,
  Transport,
  TransportContext,
} from '@gantry/core/transport';
import {
  isValidImageName,
  LayoutReferenceBase,
  type LayoutReferenceElements,
  parseLayoutReferenceElements,
  validateLayoutPolicyScope,
} from '@gantry/oci-layout-format';

export { isValidImageName };

/** The parts of `oci:` reference text, before the path is resolved. */
export type OciReferenceElements = LayoutReferenceElements;

/**
 * Splits and validates `path[:reference]` without touching the file system. Throws
 * `ERR_GANTRY_INVALID_REFERENCE` naming the problem.
 */
export function parseReferenceElements(reference: string): OciReferenceElements {
  return parseLayoutReferenceElements('oci', reference);
}

/** What `OciReference` needs from its transport (to open sources and destinations). */
export interface OciReferenceBackend {
  newImageSource(reference: OciReference, context: TransportContext): Promise<ImageSource>;
  newImageDestination(reference: OciReference, context: TransportContext): Promise<ImageDestination>;
  deleteImage(reference: OciReference, context: TransportContext): Promise<void>;
}

/**
 * An image in an OCI layout. `path` (the layout directory as written) is used for file-system access;
 * `resolvedPath` (absolute, no symlinks, at parse time) for policy identities.
 */
export class OciReference extends LayoutReferenceBase implements ImageReference {
  readonly transport: Transport;
  readonly #backend: OciReferenceBackend;

  constructor(transport: Transport, backend: OciReferenceBackend, elements: OciReferenceElements) {
    super('oci', elements);
    this.transport = transport;
    this.#backend = backend;
  }

  /**
   * The resolved directory, without the image name, as containers/image (skopeo) decides: although
   * containers-policy.json(5) describes `directory:tag` scopes for `oci:`, such a scope never matches
   * in skopeo, and the same policy file must give the same decision here.
   */
  policyConfigurationIdentity(): string {
    return this.resolvedPath;
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
 * Validates a policy.json scope for `oci:` as containers/image does: an absolute, clean path other than
 * `/` (a `:` is part of the path). Throws `ERR_GANTRY_INVALID_REFERENCE` naming the problem.
 */
export function validatePolicyConfigurationScope(scope: string): void {
  validateLayoutPolicyScope(scope, { allowImageName: false });
}
