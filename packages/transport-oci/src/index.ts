/**
 * `@gantry/transport-oci`: the `oci:path[:reference]` transport for OCI image layouts.
 *
 * ```ts
 * import { TransportRegistry } from '@gantry/core/transport';
 * import ociTransport from '@gantry/transport-oci';
 * const registry = new TransportRegistry([ociTransport]);
 * ```
 */
import { ociTransport } from './transport.js';

export { type OciContextOptions, ociContextOptions } from './context-options.js';
export type { LayoutLockOptions } from './lock.js';
export {
  isValidImageName,
  OciReference,
  type OciReferenceElements,
  parseReferenceElements,
} from './reference.js';
export {
  createOciTransport,
  isOciReference,
  type OciTransport,
  type OciTransportOptions,
  ociTransport,
} from './transport.js';

export default ociTransport;
