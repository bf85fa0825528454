/**
 * `@gantry/transport-docker-archive`: the `docker-archive:path[:reference|:@N]` transport for `docker save`
 * archives.
 *
 * ```ts
 * import { TransportRegistry } from '@gantry/core/transport';
 * import dockerArchiveTransport from '@gantry/transport-docker-archive';
 * const registry = new TransportRegistry([dockerArchiveTransport]);
 * ```
 */
import { dockerArchiveTransport } from './transport.js';

export { type DockerArchiveTransportOptions, parseAdditionalTags } from './destination.js';
export {
  DockerArchiveReference,
  type DockerArchiveReferenceElements,
  parseReferenceElements,
} from './reference.js';
export {
  createDockerArchiveTransport,
  type DockerArchiveTransport,
  dockerArchiveTransport,
  isDockerArchiveReference,
  listTags,
} from './transport.js';

export default dockerArchiveTransport;
