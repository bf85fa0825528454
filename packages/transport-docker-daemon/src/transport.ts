/**
 * The `docker-daemon:` transport: images in a Docker Engine, `docker-daemon:name:tag` or
 * `docker-daemon:sha256:<image ID>`, over the Engine API (see `client.ts` for the daemon address).
 */
import {
  type Transport,
  type TransportSpecificationVersion,
  transportSpecificationVersion,
} from '@gantry/core/transport';
import { openDockerDaemonImageDestination } from './destination.js';
import {
  DockerDaemonReference,
  type DockerDaemonReferenceBackend,
  parseReferenceElements,
  validatePolicyConfigurationScope,
} from './reference.js';
import { openDockerDaemonImageSource } from './source.js';

/** The `docker-daemon:` transport, with `parseReference` returning `DockerDaemonReference`s. */
export interface DockerDaemonTransport extends Transport {
  readonly specificationVersion: TransportSpecificationVersion;
  readonly name: 'docker-daemon';
  parseReference(reference: string): DockerDaemonReference;
}

/**
 * Creates a `docker-daemon:` transport. Sources spool `docker save` output and read it indexed; destinations
 * stream a `docker load` archive; `deleteImage` is not supported.
 */
export function createDockerDaemonTransport(): DockerDaemonTransport {
  const backend: DockerDaemonReferenceBackend = {
    newImageSource: (reference, context) => openDockerDaemonImageSource(reference, context),
    newImageDestination: (reference, context) => openDockerDaemonImageDestination(reference, context),
  };
  const transport: DockerDaemonTransport = {
    specificationVersion: transportSpecificationVersion,
    name: 'docker-daemon',
    parseReference(reference: string): DockerDaemonReference {
      return new DockerDaemonReference(transport, backend, parseReferenceElements(reference));
    },
    validatePolicyConfigurationScope(scope: string): void {
      validatePolicyConfigurationScope(scope);
    },
  };
  return transport;
}

/** The default `docker-daemon:` transport instance. */
export const dockerDaemonTransport: DockerDaemonTransport = createDockerDaemonTransport();
