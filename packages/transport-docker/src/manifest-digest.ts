import {
  type Digest,
  ErrorCodes,
  GantryError,
  isDigest,
  type TransportContext,
} from '@gantry/core/transport';
import { headerValue, manifestAcceptHeader } from './manifests.js';
import { type DockerImageReference, resolveDockerImageReference } from './reference.js';
import { registryAccessFor } from './registries.js';
import { RegistryClient } from './registry-client.js';
import { responseError } from './registry-errors.js';

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
  const [resolved] = (await resolveDockerImageReference(reference, context, 'push')).candidates as [
    DockerImageReference,
  ];
  const tagOrDigest = resolved.tagOrDigest;
  const access = await registryAccessFor(context, resolved.reference.name);
  const client = await RegistryClient.open(
    resolved.state,
    { registry: resolved.registry, repository: resolved.repository, actions: 'pull', role: 'destination' },
    context,
    access,
  );
  const what = `checking manifest ${tagOrDigest} in ${resolved.registry}/${resolved.repository}`;
  const response = await client.request({
    method: 'HEAD',
    target: `/v2/${resolved.repository}/manifests/${tagOrDigest}`,
    headers: { accept: manifestAcceptHeader },
    signal: context.signal,
    what,
  });
  await response.body.dump();
  if (response.statusCode === 404) return undefined;
  if (response.statusCode !== 200) {
    throw await responseError(response, { what, credentialsSent: client.sentCredentials });
  }
  const served = headerValue(response.headers, 'docker-content-digest');
  if (served !== undefined && isDigest(served)) return served;
  if (isDigest(tagOrDigest)) return tagOrDigest;
  throw new GantryError(ErrorCodes.Internal, `${what}: the registry gave no valid Docker-Content-Digest`);
}
