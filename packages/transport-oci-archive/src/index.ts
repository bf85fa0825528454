/**
 * `@gantry/transport-oci-archive`: the `oci-archive:path[:reference]` transport for tar archives of OCI
 * image layouts, read by streaming from offsets (never extracted) and written by streaming.
 *
 * ```ts
 * import { TransportRegistry } from '@gantry/core/transport';
 * import ociArchiveTransport from '@gantry/transport-oci-archive';
 * const registry = new TransportRegistry([ociArchiveTransport]);
 * ```
 */
import { ociArchiveTransport } from './transport.js';

export { type OciArchiveContents, type OpenOciArchiveOptions, openOciArchive } from './archive.js';
export { type OciArchiveContextOptions, ociArchiveContextOptions } from './context-options.js';
export {
  isValidImageName,
  OciArchiveReference,
  type OciArchiveReferenceElements,
  parseReferenceElements,
} from './reference.js';
export {
  createOciArchiveTransport,
  isOciArchiveReference,
  type OciArchiveTransport,
  type OciArchiveTransportOptions,
  ociArchiveTransport,
} from './transport.js';

export default ociArchiveTransport;
