import { ErrorCodes, GantryError, type TransportContext } from '@gantry/core/transport';
import { registryAccessFor } from './registries.js';
import { RegistryClient } from './registry-client.js';
import type { DockerTransportState } from './transport-state.js';

/** A registry host (DNS name, IPv4 or bracketed IPv6) with an optional port. */
const registryHostPattern =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;

/**
 * Verifies credentials against a registry as containers/image's `CheckAuth`: `GET /v2/` with the
 * credentials (Basic, or a bearer token requested without a scope). 200 → accepted; 401 →
 * `ERR_GANTRY_UNAUTHORIZED` (`invalid username/password`).
 */
export async function checkRegistryLogin(
  state: DockerTransportState,
  registryOrNamespace: string,
  context: TransportContext,
): Promise<void> {
  const registry = registryOrNamespace.split('/')[0]!;
  if (!registryHostPattern.test(registry)) {
    throw new GantryError(
      ErrorCodes.InvalidReference,
      `Invalid registry "${registryOrNamespace}": not a host[:port]`,
    );
  }
  const access = await registryAccessFor(context, registry);
  const client = await RegistryClient.open(
    state,
    { registry, repository: '', actions: '', role: 'source' },
    context,
    access,
  );
  const response = await client.requestExpecting(
    { method: 'GET', target: '/v2/', signal: context.signal, what: `logging in to ${registry}` },
    [200],
    ErrorCodes.Internal,
  );
  await response.body.dump();
}
