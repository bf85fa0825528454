import {
  type Digest,
  ErrorCodes,
  GantryError,
  isDigest,
  type TransportContext,
} from '@gantry/core/transport';
import { headerValue, manifestAcceptHeader } from './manifests.js';
import type { DockerImageReference } from './reference.js';
import { registryAccessFor } from './registries.js';
import { RegistryClient } from './registry-client.js';
import { responseError } from './registry-errors.js';

/**
 * Deletes the manifest a reference names: a tag is resolved to a digest first (HEAD with every
 * manifest type accepted, reading `Docker-Content-Digest`), then `DELETE /v2/<repo>/manifests/<digest>`.
 * 404 → `ERR_GANTRY_IMAGE_NOT_FOUND`; a registry that does not allow deletes (405) →
 * `ERR_GANTRY_NOT_SUPPORTED`.
 */
export async function deleteDockerImage(
  reference: DockerImageReference,
  context: TransportContext,
): Promise<void> {
  // Refuses `@@unknown-digest@@` references before any network traffic.
  void reference.tagOrDigest;
  const access = await registryAccessFor(context, reference.reference.name);
  const client = await RegistryClient.open(
    reference.state,
    { registry: reference.registry, repository: reference.repository, actions: '*', role: 'destination' },
    context,
    access,
  );
  const signal = context.signal;
  const name = `${reference.registry}/${reference.repository}`;
  let digest: Digest;
  if (reference.reference.digest !== undefined) digest = reference.reference.digest;
  else {
    const what = `resolving tag ${reference.reference.tag} in ${name}`;
    const head = await client.requestExpecting(
      {
        method: 'HEAD',
        target: `/v2/${reference.repository}/manifests/${reference.reference.tag}`,
        headers: { accept: manifestAcceptHeader },
        signal,
        what,
      },
      [200],
      ErrorCodes.ImageNotFound,
    );
    await head.body.dump();
    const served = headerValue(head.headers, 'docker-content-digest');
    if (served === undefined || !isDigest(served)) {
      throw new GantryError(ErrorCodes.Internal, `${what}: the registry gave no valid Docker-Content-Digest`);
    }
    digest = served;
  }
  const what = `deleting manifest ${digest} in ${name}`;
  const response = await client.request({
    method: 'DELETE',
    target: `/v2/${reference.repository}/manifests/${digest}`,
    signal,
    what,
  });
  if (response.statusCode === 200 || response.statusCode === 202 || response.statusCode === 204) {
    await response.body.dump();
    return;
  }
  // The manifest went away since it was resolved: the image is not there (any more).
  throw await responseError(response, {
    what,
    credentialsSent: client.sentCredentials,
    notFoundCode: ErrorCodes.ImageNotFound,
  });
}
