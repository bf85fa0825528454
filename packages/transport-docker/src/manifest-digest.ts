import { pullSourcesFor } from '@gantry/containers-config';
import {
  type Digest,
  ErrorCodes,
  GantryError,
  isDigest,
  type TransportContext,
} from '@gantry/core/transport';
import { memoForContext } from './context-memo.js';
import { bareMediaType, headerValue, manifestAcceptHeader } from './manifests.js';
import { type DockerImageReference, resolveDockerImageReference } from './reference.js';
import { loadContextRegistriesConfiguration, registryAccessFor, registrySettingsFor } from './registries.js';
import { RegistryClient, type RegistryClientScope } from './registry-client.js';
import { responseError } from './registry-errors.js';
import type { DockerTransportState } from './transport-state.js';

/** What a HEAD request tells about a manifest. */
export interface ManifestHead {
  digest: Digest;
  /** The served `Content-Type` without parameters; undefined when the registry sent none. */
  mediaType: string | undefined;
  /** The served `Content-Length`; undefined when absent. */
  size: number | undefined;
}

/**
 * The digest of the manifest a reference names, from one HEAD request with every manifest type
 * accepted (`Docker-Content-Digest`); undefined when the registry has no such manifest (404). A
 * reference by digest whose registry answers without the header has that digest. Used by `sync` to
 * skip images a destination already has. A short name must resolve to one reference, as for writing.
 */
export async function headManifestDigest(
  reference: DockerImageReference,
  context: TransportContext,
): Promise<Digest | undefined> {
  return (await headManifest(reference, context, 'push'))?.digest;
}

/**
 * What HEAD requests tell about the manifest a reference names; undefined when there is none (404).
 * Purpose `push` asks the one place a copy would write to (a short name must resolve to one
 * reference). Purpose `pull` asks where a copy would read from: the registries.conf mirrors allowed for
 * the reference, then its primary location, the first that has the manifest; a short name that
 * stands for several candidates is refused (`ERR_GANTRY_NOT_SUPPORTED`: the caller reads the manifest
 * instead). Blocked registries are refused before any traffic.
 */
export async function headManifest(
  reference: DockerImageReference,
  context: TransportContext,
  purpose: 'pull' | 'push',
): Promise<ManifestHead | undefined> {
  const { candidates } = await resolveDockerImageReference(reference, context, purpose);
  if (candidates.length !== 1) {
    throw new GantryError(
      ErrorCodes.NotSupported,
      `${reference}: a short name with several candidates has no single manifest to check`,
    );
  }
  const resolved = candidates[0]!;
  if (purpose === 'push') {
    const access = await registryAccessFor(context, resolved.reference.name);
    return headAt(resolved, resolved.registry, resolved.repository, resolved.tagOrDigest, {
      context,
      insecure: access.insecure ?? false,
      credentialHelpers: access.credentialHelpers,
    });
  }
  const configuration = await loadContextRegistriesConfiguration(context);
  const settings = registrySettingsFor(configuration, resolved.reference.name);
  const pullSources = pullSourcesFor(settings, resolved.reference);
  let lastError: unknown;
  for (const pullSource of pullSources) {
    if (pullSource.reference.name !== resolved.reference.name) {
      registrySettingsFor(configuration, pullSource.reference.name);
    }
    const target = pullSource.reference;
    const tagOrDigest = target.digest ?? target.tag ?? 'latest';
    try {
      const head = await headAt(resolved, target.domain, target.path, tagOrDigest, {
        context,
        insecure: pullSource.endpoint.insecure,
        credentialHelpers: configuration.credentialHelpers,
      });
      if (head !== undefined) return head;
      lastError = undefined;
    } catch (error) {
      if (context.signal?.aborted) throw error;
      lastError = error;
    }
  }
  if (lastError !== undefined) throw lastError;
  return undefined;
}

/** A number per transport instance, so that clients of two instances never share a memo entry. */
const stateNumbers = new WeakMap<DockerTransportState, number>();
let statesNumbered = 0;

/**
 * The client HEAD requests of one context use for a repository: opened once (credentials looked up,
 * the registry pinged, tokens fetched) and shared by every check of that context for a while (see
 * context-memo.ts), so that a sync checking hundreds of images sets up one client per repository, not
 * one per image. A failed opening is not kept.
 */
function headClient(
  state: DockerTransportState,
  scope: RegistryClientScope,
  access: { context: TransportContext; insecure: boolean; credentialHelpers: readonly string[] | undefined },
): Promise<RegistryClient> {
  let stateNumber = stateNumbers.get(state);
  if (stateNumber === undefined) {
    statesNumbered += 1;
    stateNumber = statesNumbered;
    stateNumbers.set(state, stateNumber);
  }
  const key = [
    'head-client',
    stateNumber,
    scope.role,
    scope.registry,
    scope.repository,
    access.insecure,
    access.credentialHelpers?.join(',') ?? '',
  ].join('\n');
  return memoForContext(access.context, key, () =>
    RegistryClient.open(state, scope, access.context, {
      insecure: access.insecure,
      ...(access.credentialHelpers === undefined ? {} : { credentialHelpers: access.credentialHelpers }),
    }),
  );
}

async function headAt(
  reference: DockerImageReference,
  registry: string,
  repository: string,
  tagOrDigest: string,
  access: { context: TransportContext; insecure: boolean; credentialHelpers: readonly string[] | undefined },
): Promise<ManifestHead | undefined> {
  const { context } = access;
  // A HEAD request only reads, whether it checks where a pull reads or where a push would write: it
  // goes through the reading connections (role `source`), so that a sync whose source and destination
  // are one registry checks both over one pool of connections.
  const client = await headClient(
    reference.state,
    { registry, repository, actions: 'pull', role: 'source' },
    access,
  );
  const what = `checking manifest ${tagOrDigest} in ${registry}/${repository}`;
  const response = await client.request({
    method: 'HEAD',
    target: `/v2/${repository}/manifests/${tagOrDigest}`,
    headers: { accept: manifestAcceptHeader },
    signal: context.signal,
    what,
  });
  await response.body.dump();
  if (response.statusCode === 404) return undefined;
  if (response.statusCode !== 200) {
    throw await responseError(response, { what, credentialsSent: client.sentCredentials });
  }
  const contentType = headerValue(response.headers, 'content-type');
  const length = Number(headerValue(response.headers, 'content-length'));
  const head = (digest: Digest): ManifestHead => ({
    digest,
    mediaType: contentType === undefined ? undefined : bareMediaType(contentType),
    size: Number.isSafeInteger(length) && length >= 0 ? length : undefined,
  });
  const served = headerValue(response.headers, 'docker-content-digest');
  if (served !== undefined && isDigest(served)) return head(served);
  if (isDigest(tagOrDigest)) return head(tagOrDigest);
  throw new GantryError(ErrorCodes.Internal, `${what}: the registry gave no valid Docker-Content-Digest`);
}
