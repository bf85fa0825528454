/**
 * `@gantry/transport-dir`: the `dir:path` transport (containers/image's `directory` layout).
 *
 * Importing this package registers nothing: add `dirTransport` (or one made by `createDirTransport`)
 * to a `TransportRegistry`.
 */
import { dirTransport } from './transport.js';

export { resolvePathToFullyExplicit } from '@gantry/core/transport';
export { type DirContextOptions, dirContextOptions } from './context-options.js';
export {
  blobFileName,
  dirTransportVersion,
  isLayoutFileName,
  manifestFileName,
  signatureFileName,
  topLevelManifestFileName,
  versionFileName,
} from './layout.js';
export { DirImageReference } from './reference.js';
export {
  createDirTransport,
  type DirTransport,
  type DirTransportOptions,
  dirTransport,
} from './transport.js';

export default dirTransport;
