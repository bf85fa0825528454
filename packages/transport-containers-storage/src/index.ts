/**
 * `@gantry/transport-containers-storage`: the `containers-storage:` transport, images in the
 * containers/storage store that podman, buildah, CRI-O and skopeo share (vfs, overlay and btrfs drivers).
 *
 * ```ts
 * import { TransportRegistry } from '@gantry/core/transport';
 * import containersStorageTransport from '@gantry/transport-containers-storage';
 * const registry = new TransportRegistry([containersStorageTransport]);
 * ```
 */
import { containersStorageTransport } from './transport.js';

export { defaultStoreOptions, type StoreOptions } from '@gantry/containers-config';
export type {
  ApplyDiffOptions,
  ApplyDiffResult,
  IdMapping,
  LayerFileGetter,
  StorageDriver,
  StorageDriverFactory,
  StorageDriverOptions,
} from './drivers/driver.js';
export { bigDataFileName, layerIdFor } from './ids.js';
export { acquireLock, type HeldLock, withLock } from './lockfile.js';
export {
  ContainersStorageReference,
  parseStoreSpecification,
  resolveStoreLocation,
  type StoreSpecification,
} from './reference.js';
export { ContainersStore, type ImageRecord, type LayerRecord, type StoreLocation } from './store.js';
export {
  type ContainersStorageTransport,
  type ContainersStorageTransportOptions,
  containersStorageTransport,
  createContainersStorageTransport,
} from './transport.js';

export default containersStorageTransport;
