import {
  type DockerReference,
  ErrorCodes,
  familiarString,
  GantryError,
  type ImageDestination,
  type ImageReference,
  type ImageSource,
  isGantryError,
  parseNormalizedNamed,
  type Transport,
  type TransportContext,
  tagNameOnly,
} from '@gantry/core';
import { deleteDockerImage } from './delete.js';
import { openDockerImageDestination } from './image-destination.js';
import { openDockerImageSource } from './image-source.js';
import type { DockerTransportState } from './transport-state.js';

/**
 * A `docker://[domain[:port]/]path[:tag][@digest]` reference.
 *
 * Rules (as containers/image's docker transport):
 * - the part after `docker:` must start with `//`;
 * - the name is normalised (`busybox` → `docker.io/library/busybox`); short names are not resolved
 *   through registries.conf yet;
 * - a name with neither tag nor digest gets `:latest`;
 * - a tag and a digest together are refused (the registry API cannot ask for both);
 * - `stringWithinTransport()` is `//` + the familiar form (`//busybox:latest`);
 * - `//name@@unknown-digest@@` (a name without tag or digest, then that suffix) names an image to push
 *   without a tag: only a destination can be opened; the manifest is stored by its digest. Its policy
 *   identity is the repository name, and the namespaces start at the parent namespace;
 * - the policy identity is `domain/path:tag` or `domain/path@digest`; the namespaces are the
 *   repository, each parent namespace up to the registry host (with its port), then wildcard domains
 *   (`*.example.com`, `*.com`) made from the host without its port.
 */
export class DockerImageReference implements ImageReference {
  readonly transport: Transport;
  /** The normalised docker reference; has a tag or a digest, never both. */
  readonly reference: DockerReference;
  /** True for `//name@@unknown-digest@@`: push without a tag (the reference has no tag or digest). */
  readonly isUnknownDigest: boolean;
  /** @internal */
  readonly state: DockerTransportState;

  /** @internal Use `transport.parseReference` or `newDockerImageReference`. */
  constructor(
    transport: Transport,
    state: DockerTransportState,
    reference: DockerReference,
    isUnknownDigest = false,
  ) {
    this.transport = transport;
    this.state = state;
    this.reference = reference;
    this.isUnknownDigest = isUnknownDigest;
    Object.freeze(this);
  }

  /** The registry host and port (`docker.io`, `127.0.0.1:5000`). */
  get registry(): string {
    return this.reference.domain;
  }

  /** The repository path within the registry (`library/busybox`). */
  get repository(): string {
    return this.reference.path;
  }

  /**
   * The tag or digest used in `/v2/<repository>/manifests/<tagOrDigest>`. Throws
   * `ERR_GANTRY_NOT_SUPPORTED` for an unknown-digest reference (it has neither).
   */
  get tagOrDigest(): string {
    const value = this.reference.digest ?? this.reference.tag;
    if (value === undefined) {
      throw new GantryError(
        ErrorCodes.NotSupported,
        `${this}: a reference without a tag or digest can only be written to (the image is stored by its digest)`,
      );
    }
    return value;
  }

  stringWithinTransport(): string {
    return `//${familiarString(this.reference)}${this.isUnknownDigest ? unknownDigestSuffix : ''}`;
  }

  dockerReference(): DockerReference {
    return this.reference;
  }

  policyConfigurationIdentity(): string {
    const reference = this.reference;
    if (this.isUnknownDigest) return reference.name;
    return reference.digest !== undefined
      ? `${reference.name}@${reference.digest}`
      : `${reference.name}:${reference.tag}`;
  }

  policyConfigurationNamespaces(): string[] {
    const namespaces: string[] = [];
    let name = this.reference.name;
    for (;;) {
      namespaces.push(name);
      const lastSlash = name.lastIndexOf('/');
      if (lastSlash === -1) break;
      name = name.slice(0, lastSlash);
    }
    const portColon = name.indexOf(':');
    if (portColon !== -1) name = name.slice(0, portColon);
    for (;;) {
      const firstDot = name.indexOf('.');
      if (firstDot === -1) break;
      name = name.slice(firstDot + 1);
      namespaces.push(`*.${name}`);
    }
    return this.isUnknownDigest ? namespaces.slice(1) : namespaces;
  }

  /** `docker://<familiar reference>`, for messages. */
  toString(): string {
    return `docker:${this.stringWithinTransport()}`;
  }

  newImageSource(context: TransportContext = {}): Promise<ImageSource> {
    return openDockerImageSource(this, context);
  }

  newImageDestination(context: TransportContext = {}): Promise<ImageDestination> {
    return openDockerImageDestination(this, context);
  }

  /**
   * Deletes the manifest the reference names from the registry: a tag is first resolved to the digest
   * of the manifest it points to (HEAD with every manifest type accepted), then that digest is
   * deleted — which removes every tag pointing to it, as with skopeo. The registry must allow deletes.
   */
  deleteImage(context: TransportContext = {}): Promise<void> {
    return deleteDockerImage(this, context);
  }
}

/** The suffix of references that push an image without a tag. */
export const unknownDigestSuffix = '@@unknown-digest@@';

/**
 * Builds a reference from a parsed docker reference, adding `:latest` when it has neither tag nor
 * digest. Throws `ERR_GANTRY_INVALID_REFERENCE` for a reference with both a tag and a digest.
 */
export function newDockerImageReference(
  transport: Transport,
  state: DockerTransportState,
  reference: DockerReference,
): DockerImageReference {
  const tagged = tagNameOnly(reference);
  if (tagged.tag !== undefined && tagged.digest !== undefined) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid image name "docker://${familiarString(tagged)}": Docker references with both a tag and digest are currently not supported`,
    );
  }
  return new DockerImageReference(transport, state, tagged);
}

/** Parses the part of `docker://…` after `docker:` (see `DockerImageReference`). */
export function parseDockerImageReference(
  transport: Transport,
  state: DockerTransportState,
  input: string,
): DockerImageReference {
  if (!input.startsWith('//')) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid image name "docker:${input}": docker: image reference ${input} does not start with //`,
    );
  }
  let withoutSlashes = input.slice(2);
  const isUnknownDigest = withoutSlashes.endsWith(unknownDigestSuffix);
  if (isUnknownDigest) withoutSlashes = withoutSlashes.slice(0, -unknownDigestSuffix.length);
  let reference: DockerReference;
  try {
    reference = parseNormalizedNamed(withoutSlashes);
  } catch (error) {
    if (isGantryError(error)) throw error;
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid image name "docker:${input}": ${String(error)}`,
      {
        cause: error,
      },
    );
  }
  if (isUnknownDigest) {
    if (reference.tag !== undefined || reference.digest !== undefined) {
      throw new GantryError(
        ErrorCodes.InvalidReference,
        `Invalid image name "docker:${input}": docker: image reference "${reference}${unknownDigestSuffix}" has unknown digest set but it contains either a tag or digest`,
      );
    }
    return new DockerImageReference(transport, state, reference, true);
  }
  return newDockerImageReference(transport, state, reference);
}

/**
 * Parses a repository name for tag listing (`list-tags docker://REPO`): `//` then a name without
 * tag or digest, normalised (`//busybox` → `docker.io/library/busybox`).
 */
export function parseDockerRepositoryName(input: string): DockerReference {
  const withoutTransport = input.startsWith('docker:') ? input.slice('docker:'.length) : input;
  if (!withoutTransport.startsWith('//')) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid image name "${input}": docker: image reference ${withoutTransport} does not start with //`,
    );
  }
  const reference = parseNormalizedNamed(withoutTransport.slice(2));
  if (reference.tag !== undefined || reference.digest !== undefined) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid repository name "${input}": No tag or digest allowed in reference`,
    );
  }
  return reference;
}
