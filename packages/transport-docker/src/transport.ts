import {
  type Digest,
  type DockerReference,
  ErrorCodes,
  GantryError,
  type ImageReference,
  type Transport,
  type TransportContext,
  transportSpecificationVersion,
  trimToName,
} from '@gantry/core/transport';
import { gantryUserAgent } from './connections.js';
import { checkRegistryLogin } from './login.js';
import { headManifest, headManifestDigest, type ManifestHead } from './manifest-digest.js';
import {
  type DockerImageReference,
  firstReadableCandidate,
  newDockerImageReference,
  parseDockerImageReference,
  parseDockerRepositoryName,
  resolveDockerImageReference,
} from './reference.js';
import { type ListReferrersOptions, listReferrers, type ReferrerDescriptor } from './referrers.js';
import { type ListTagsOptions, listRegistryRepositories, listRepositoryTags } from './tags.js';
import { createDockerTransportState } from './transport-state.js';

/** Options of `createDockerTransport`. */
export interface DockerTransportOptions {
  /** The `User-Agent` sent to registries; default `gantry/<version>`. */
  userAgent?: string;
}

/** The `docker` transport, with registry operations beyond the transport contract. */
export interface DockerTransport extends Transport {
  readonly name: 'docker';
  parseReference(reference: string): DockerImageReference;
  /** A reference for a parsed docker reference (`:latest` added when it has neither tag nor digest). */
  newReference(reference: DockerReference): DockerImageReference;
  /**
   * Every tag of a repository, all pages (`list-tags`). `repository` is a docker reference without
   * tag or digest, or a string `//name` / `docker://name` (tags and digests refused, as skopeo), or
   * an `ImageReference` of this transport (the transport contract's `listTags`: its tag or digest is
   * ignored). A short name (string or reference) is resolved as for reading: the candidates'
   * repositories are tried in order and the first that lists is used.
   */
  listTags(
    repository: DockerReference | ImageReference | string,
    context?: TransportContext,
    options?: ListTagsOptions,
  ): Promise<string[]>;
  /**
   * `listTags`, and the repository that listed the tags (`host/path`): for a short name, the
   * candidate that answered.
   */
  listTagsWithRepository(
    repository: DockerReference | ImageReference | string,
    context?: TransportContext,
    options?: ListTagsOptions,
  ): Promise<{ repository: string; tags: string[] }>;
  /**
   * The manifests whose `subject` is `subject` in the reference's repository (signatures, SBOMs,
   * attestations): the referrers API, or the referrers tag schema on registries without it. A short
   * name must resolve to one reference (an alias, one search registry, or skopeo's normalisation).
   */
  listReferrers(
    reference: DockerImageReference,
    subject: Digest,
    context?: TransportContext,
    options?: ListReferrersOptions,
  ): Promise<ReferrerDescriptor[]>;
  /**
   * Every repository of a registry (`/v2/_catalog`, all pages), for `sync`. `registry` is `host[:port]`.
   */
  listRepositories(
    registry: string,
    context?: TransportContext,
    options?: ListTagsOptions,
  ): Promise<string[]>;
  /**
   * Checks that the context's credentials are accepted by a registry (`login`): pings `/v2/`, then
   * GETs it authenticated (with a bearer token for no scope when the registry uses tokens).
   * `registry` is `host[:port]`, optionally followed by `/namespace…` (only the host is contacted).
   * Wrong credentials → `ERR_GANTRY_UNAUTHORIZED`.
   */
  checkLogin(registry: string, context?: TransportContext): Promise<void>;
  /**
   * The digest of the manifest `reference` names, from a HEAD request; undefined when the registry has
   * none (see manifest-digest.ts).
   */
  manifestDigest(reference: ImageReference, context?: TransportContext): Promise<Digest | undefined>;
  /**
   * What HEAD requests tell about the manifest `reference` names (digest, media type, size), where a
   * pull would read it (`pull`: mirrors first) or a push would write it; undefined when there is none
   * (see manifest-digest.ts).
   */
  manifestHead(
    reference: ImageReference,
    context: TransportContext | undefined,
    purpose: 'pull' | 'push',
  ): Promise<ManifestHead | undefined>;
  /** Closes the connections kept alive to registries (they reopen on next use). */
  closeConnections(): Promise<void>;
}

/**
 * Creates a `docker` transport instance. Each instance has its own connection pools (one per registry
 * origin, keep-alive) and its own record of where blobs are, used for cross-repository mounts; create
 * one per application and reuse it. Creating it opens nothing.
 */
export function createDockerTransport(options: DockerTransportOptions = {}): DockerTransport {
  const state = createDockerTransportState(options.userAgent ?? gantryUserAgent());
  const transport: DockerTransport = {
    specificationVersion: transportSpecificationVersion,
    name: 'docker',
    parseReference(reference: string): DockerImageReference {
      return parseDockerImageReference(transport, state, reference);
    },
    newReference(reference: DockerReference): DockerImageReference {
      return newDockerImageReference(transport, state, reference);
    },
    /**
     * Any scope is accepted, as containers/image does (a scope that matches nothing is harmless):
     * `host[:port]`, a namespace, a repository, `repository:tag`, `repository@digest` or `*.domain`.
     */
    validatePolicyConfigurationScope(_scope: string): void {},
    listTags(repository, context = {}, listOptions = {}) {
      return transport.listTagsWithRepository(repository, context, listOptions).then((listed) => listed.tags);
    },
    listTagsWithRepository(repository, context = {}, listOptions = {}) {
      // Names are checked synchronously (a tag or digest throws at once, as before).
      let parsed: DockerReference;
      let shortNameReference: DockerImageReference | undefined;
      if (typeof repository === 'string') {
        parsed = parseDockerRepositoryName(repository);
        const within = repository.startsWith('docker:') ? repository.slice('docker:'.length) : repository;
        const reference = parseDockerImageReference(transport, state, within);
        if (reference.shortName !== undefined) shortNameReference = reference;
      } else if ('newImageSource' in repository) {
        const named = repository.transport === transport ? repository.dockerReference() : undefined;
        if (named === undefined) {
          return Promise.reject(
            new GantryError(
              ErrorCodes.Internal,
              `${repository.transport.name}:${repository.stringWithinTransport()} is not a reference of this docker transport instance`,
            ),
          );
        }
        parsed = trimToName(named);
        if ((repository as DockerImageReference).shortName !== undefined) {
          shortNameReference = repository as DockerImageReference;
        }
      } else parsed = repository;
      if (shortNameReference === undefined) {
        return listRepositoryTags(state, parsed, context, listOptions).then((tags) => ({
          repository: parsed.name,
          tags,
        }));
      }
      return listShortNameTags(shortNameReference, context, listOptions);
    },
    async listReferrers(reference, subject, context = {}, referrerOptions = {}) {
      if (reference.transport !== transport) {
        throw new GantryError(
          ErrorCodes.Internal,
          `${reference} belongs to another docker transport instance`,
        );
      }
      if (reference.shortName === undefined)
        return listReferrers(reference, subject, context, referrerOptions);
      // Listing referrers cannot tell "no such repository" from "no referrers": a short name must
      // resolve to one reference (as for writing).
      const { candidates } = await resolveDockerImageReference(reference, context, 'push');
      return listReferrers(candidates[0]!, subject, context, referrerOptions);
    },
    listRepositories(registry, context = {}, listOptions = {}) {
      return listRegistryRepositories(state, registry, context, listOptions);
    },
    async manifestDigest(reference, context = {}) {
      if (reference.transport !== transport) {
        throw new GantryError(
          ErrorCodes.Internal,
          `${reference.transport.name}:${reference.stringWithinTransport()} is not a reference of this docker transport instance`,
        );
      }
      return headManifestDigest(reference as DockerImageReference, context);
    },
    async manifestHead(reference, context = {}, purpose) {
      if (reference.transport !== transport) {
        throw new GantryError(
          ErrorCodes.Internal,
          `${reference.transport.name}:${reference.stringWithinTransport()} is not a reference of this docker transport instance`,
        );
      }
      return headManifest(reference as DockerImageReference, context, purpose);
    },
    checkLogin(registry, context = {}) {
      return checkRegistryLogin(state, registry, context);
    },
    closeConnections() {
      return state.pools.close();
    },
  };
  return Object.freeze(transport);
}

/** `listTags` for a short name: each candidate repository in order, the first that lists. */
async function listShortNameTags(
  reference: DockerImageReference,
  context: TransportContext,
  options: ListTagsOptions,
): Promise<{ repository: string; tags: string[] }> {
  const { candidates, resolution } = await resolveDockerImageReference(reference, context, 'pull');
  return firstReadableCandidate(reference, candidates, resolution, context, async (candidate) => ({
    repository: candidate.reference.name,
    tags: await listRepositoryTags(reference.state, trimToName(candidate.reference), context, options),
  }));
}

/** The default `docker` transport instance. */
export const dockerTransport: DockerTransport = createDockerTransport();
