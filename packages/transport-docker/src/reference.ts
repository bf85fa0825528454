import { isShortName, resolveShortName, type ShortNameResolution } from '@gantry/containers-config';
import {
  type DockerReference,
  ErrorCodes,
  enclosingNamespaces,
  familiarString,
  GantryError,
  type ImageDestination,
  type ImageReference,
  type ImageSource,
  isGantryError,
  parseNormalizedNamed,
  parseReferenceGrammar,
  type Transport,
  type TransportContext,
  tagNameOnly,
  trimToName,
} from '@gantry/core/transport';
import { deleteDockerImage } from './delete.js';
import { openDockerImageDestination } from './image-destination.js';
import { openDockerImageSource } from './image-source.js';
import { loadContextRegistriesConfiguration, loadContextShortNameAliasCache } from './registries.js';
import type { DockerTransportState } from './transport-state.js';

/**
 * A `docker://[domain[:port]/]path[:tag][@digest]` reference.
 *
 * Rules (as containers/image's docker transport):
 * - the part after `docker:` must start with `//`;
 * - the name is normalised (`busybox` → `docker.io/library/busybox`) for `reference`;
 * - a name written without a registry (a *short name*: `busybox`, `user/app`, see core's
 *   `isShortName`) is resolved through registries.conf when the reference is opened, not when it is
 *   parsed (`shortName` keeps it as written): aliases, then `unqualified-search-registries`, else
 *   skopeo's normalisation (see `resolveDockerImageReference` and core's `resolveShortName`). The
 *   opened source or destination reports the resolved, fully qualified reference as its `reference`
 *   (so policy.json scopes and `inspect`'s Name see the resolved name);
 * - a name with neither tag nor digest gets `:latest`;
 * - a tag and a digest together are refused (the registry API cannot ask for both);
 * - `stringWithinTransport()` is `//` + the short name as written with its tag or digest
 *   (`//busybox:latest`, `//library/busybox:1`), or `//` + the fully qualified reference
 *   (`//docker.io/library/busybox:latest`, `//quay.io/a/b:t`), so that parsing it again gives an
 *   equal reference (a fully qualified docker.io name is not shortened into a short name);
 * - `//name@@unknown-digest@@` (a name without tag or digest, then that suffix) names an image to push
 *   without a tag: only a destination can be opened; the manifest is stored by its digest. Its policy
 *   identity is the repository name, and the namespaces start at the parent namespace;
 * - the policy identity is `domain/path:tag` or `domain/path@digest`; the namespaces are the
 *   repository, each parent namespace up to the registry host (with its port), then wildcard domains
 *   (`*.example.com`, `*.com`) made from the host without its port.
 */
export class DockerImageReference implements ImageReference {
  readonly transport: Transport;
  /**
   * The normalised docker reference; has a tag or a digest, never both. For a short name, skopeo's
   * normalisation (docker.io) until resolved: the opened source or destination has the resolved one.
   */
  readonly reference: DockerReference;
  /** True for `//name@@unknown-digest@@`: push without a tag (the reference has no tag or digest). */
  readonly isUnknownDigest: boolean;
  /**
   * For a short name, the repository name as written (`busybox`, `library/busybox`, `user/app`),
   * without tag or digest; undefined for a fully qualified name. A short name's `reference` is
   * skopeo's normalisation, used only until the reference is opened and resolved.
   */
  readonly shortName: string | undefined;
  /** @internal */
  readonly state: DockerTransportState;

  /** @internal Use `transport.parseReference` or `newDockerImageReference`. */
  constructor(
    transport: Transport,
    state: DockerTransportState,
    reference: DockerReference,
    isUnknownDigest = false,
    shortName?: string,
  ) {
    this.transport = transport;
    this.state = state;
    this.reference = reference;
    this.isUnknownDigest = isUnknownDigest;
    this.shortName = shortName;
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
    const suffix = this.isUnknownDigest ? unknownDigestSuffix : '';
    if (this.shortName === undefined) return `//${this.reference}${suffix}`;
    return `//${this.shortNameWithTagAndDigest()}${suffix}`;
  }

  /** The short name as written with the reference's tag and digest (`busybox:latest`). */
  private shortNameWithTagAndDigest(): string {
    const { tag, digest } = this.reference;
    return `${this.shortName}${tag !== undefined ? `:${tag}` : ''}${digest !== undefined ? `@${digest}` : ''}`;
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
    const namespaces = enclosingNamespaces(this.reference.name);
    return this.isUnknownDigest ? namespaces.slice(1) : namespaces;
  }

  /** `docker://<familiar reference>`, for messages. */
  toString(): string {
    return `docker:${this.stringWithinTransport()}`;
  }

  /**
   * Opens the image for reading. A short name is resolved first (`resolveDockerImageReference`,
   * purpose `pull`): its candidates are tried in order and the first that can be read is used (its
   * source's `reference` is that candidate); when none can, the error lists every candidate and why
   * it failed (its code is the candidates' common code, else the first one other than
   * `ERR_GANTRY_IMAGE_NOT_FOUND`). With one candidate, its error is thrown unchanged.
   */
  async newImageSource(context: TransportContext = {}): Promise<ImageSource> {
    if (this.shortName === undefined) return openDockerImageSource(this, context);
    void this.tagOrDigest;
    const { candidates, resolution } = await resolveDockerImageReference(this, context, 'pull');
    return firstReadableCandidate(this, candidates, resolution, context, (candidate) =>
      openDockerImageSource(candidate, context),
    );
  }

  /**
   * Opens the image for writing. A short name must resolve to one reference (purpose `push`: an
   * alias, the only search registry, or skopeo's normalisation); the destination's `reference` is it.
   */
  async newImageDestination(context: TransportContext = {}): Promise<ImageDestination> {
    if (this.shortName === undefined) return openDockerImageDestination(this, context);
    const { candidates } = await resolveDockerImageReference(this, context, 'push');
    return openDockerImageDestination(candidates[0]!, context);
  }

  /**
   * Deletes the manifest the reference names from the registry: a tag is first resolved to the digest
   * of the manifest it points to (HEAD with every manifest type accepted), then that digest is
   * deleted — which removes every tag pointing to it, as with skopeo. The registry must allow deletes.
   * A short name must resolve to one reference, as for writing.
   */
  async deleteImage(context: TransportContext = {}): Promise<void> {
    if (this.shortName === undefined) return deleteDockerImage(this, context);
    void this.tagOrDigest;
    const { candidates } = await resolveDockerImageReference(this, context, 'push');
    return deleteDockerImage(candidates[0]!, context);
  }
}

/**
 * The fully qualified references `reference` stands for under `context`: itself when it is not a
 * short name; otherwise the candidates of core's `resolveShortName` with the context's
 * registries.conf (`context.registriesConfPath`, else the system's, with drop-ins) and the user's
 * alias cache (`short-name-aliases.conf`, consulted before registries.conf's aliases). Purpose `pull`
 * may give several candidates (modes `disabled`/`permissive`; `enforcing` refuses several), `push`
 * gives exactly one or fails. Candidates keep the reference's tag, digest and `@@unknown-digest@@`.
 * Contacts no registry; blocked registries are refused when a candidate is opened.
 */
export async function resolveDockerImageReference(
  reference: DockerImageReference,
  context: TransportContext,
  purpose: 'pull' | 'push',
): Promise<{ candidates: DockerImageReference[]; resolution: ShortNameResolution | undefined }> {
  if (reference.shortName === undefined) return { candidates: [reference], resolution: undefined };
  const [configuration, aliasCache] = await Promise.all([
    loadContextRegistriesConfiguration(context),
    loadContextShortNameAliasCache(context),
  ]);
  const input = reference.isUnknownDigest
    ? reference.shortName
    : `${reference.shortName}${reference.reference.tag !== undefined ? `:${reference.reference.tag}` : ''}${reference.reference.digest !== undefined ? `@${reference.reference.digest}` : ''}`;
  let resolution: ShortNameResolution;
  try {
    resolution = resolveShortName(input, configuration, { purpose, aliasCache });
  } catch (error) {
    if (!isGantryError(error)) throw error;
    throw new GantryError(error.code, `${reference}: ${error.message}`, { cause: error });
  }
  const candidates = resolution.candidates.map((candidate) =>
    reference.isUnknownDigest
      ? new DockerImageReference(reference.transport, reference.state, trimToName(candidate), true)
      : new DockerImageReference(reference.transport, reference.state, candidate),
  );
  return { candidates, resolution };
}

/**
 * Runs `attempt` on each candidate in order and returns the first success. One candidate: its
 * error as is. Several: an error listing each candidate's failure; an abort stops at once.
 */
export async function firstReadableCandidate<T>(
  reference: DockerImageReference,
  candidates: readonly DockerImageReference[],
  resolution: ShortNameResolution | undefined,
  context: TransportContext,
  attempt: (candidate: DockerImageReference) => Promise<T>,
): Promise<T> {
  if (candidates.length === 1) return attempt(candidates[0]!);
  const failures: Array<{ candidate: DockerImageReference; error: unknown }> = [];
  for (const candidate of candidates) {
    try {
      return await attempt(candidate);
    } catch (error) {
      if (context.signal?.aborted) throw error;
      failures.push({ candidate, error });
    }
  }
  const codes = failures.map(({ error }) => (isGantryError(error) ? error.code : ErrorCodes.Internal));
  const code = codes.every((each) => each === codes[0])
    ? codes[0]!
    : (codes.find((each) => each !== ErrorCodes.ImageNotFound && each !== ErrorCodes.RepositoryNotFound) ??
      ErrorCodes.Internal);
  const chosen = failures[codes.indexOf(code)]?.error;
  const how = resolution?.origin ? ` (unqualified-search registries of ${resolution.origin})` : '';
  const lines = failures.map(
    ({ candidate, error }) =>
      `\n * ${candidate.reference}: ${error instanceof Error ? error.message : String(error)}`,
  );
  throw new GantryError(
    code,
    `${reference}: short name resolved to ${candidates.length} candidates${how}, none could be read:${lines.join('')}`,
    { cause: chosen, retryable: isGantryError(chosen) && chosen.retryable },
  );
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
  const shortName = isShortName(withoutSlashes) ? writtenRepositoryName(withoutSlashes) : undefined;
  if (isUnknownDigest) {
    if (reference.tag !== undefined || reference.digest !== undefined) {
      throw new GantryError(
        ErrorCodes.InvalidReference,
        `Invalid image name "docker:${input}": docker: image reference "${reference}${unknownDigestSuffix}" has unknown digest set but it contains either a tag or digest`,
      );
    }
    return new DockerImageReference(transport, state, reference, true, shortName);
  }
  const tagged = newDockerImageReference(transport, state, reference);
  return shortName === undefined
    ? tagged
    : new DockerImageReference(transport, state, tagged.reference, false, shortName);
}

/** The repository name of `input` as written, without tag or digest (`library/busybox`). */
function writtenRepositoryName(input: string): string {
  const raw = parseReferenceGrammar(input);
  return raw.domain === '' ? raw.path : `${raw.domain}/${raw.path}`;
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
