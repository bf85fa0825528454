/**
 * `@gantry/transport-docker-daemon`: the `docker-daemon:name:tag` transport for the Docker Engine API.
 *
 * ```ts
 * import { TransportRegistry } from '@gantry/core/transport';
 * import dockerDaemonTransport from '@gantry/transport-docker-daemon';
 * const registry = new TransportRegistry([dockerDaemonTransport]);
 * ```
 */
import { dockerDaemonTransport } from './transport.js';

export {
  type DockerDaemonTlsSettings,
  type DockerDaemonTransportOptions,
  DockerEngineClient,
  defaultDockerHost,
  dockerHostOf,
  dockerTlsSettingsOf,
  maximumApiVersion,
} from './client.js';
export {
  DockerDaemonReference,
  type DockerDaemonReferenceElements,
  parseReferenceElements,
} from './reference.js';
export {
  createDockerDaemonTransport,
  type DockerDaemonTransport,
  dockerDaemonTransport,
} from './transport.js';

export default dockerDaemonTransport;
