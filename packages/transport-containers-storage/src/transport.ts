/**
 * The `containers-storage:` transport: images in the store podman, buildah, CRI-O and skopeo share.
 */
import { rm } from 'node:fs/promises';
import { isRootless } from '@gantry/containers-config';
import {
  ErrorCodes,
  GantryError,
  type ImageDestination,
  type ImageSource,
  type Transport,
  type TransportContext,
  type TransportSpecificationVersion,
  transportSpecificationVersion,
} from '@gantry/core/transport';
import { ContainersStorageDestination } from './destination.js';
import type { StorageDriverFactory } from './drivers/driver.js';
import { loadBuiltInDriver } from './drivers/registry.js';
import { findImage, imageNotFound, layerChain } from './images.js';
import {
  type ContainersStorageBackend,
  type ContainersStorageReference,
  parseContainersStorageReference,
  validatePolicyConfigurationScope,
} from './reference.js';
import { ContainersStorageSource } from './source.js';
import { ContainersStore, readImagesOfLocation, type StoreLocation } from './store.js';

export interface ContainersStorageTransportOptions {
  /** Extra storage drivers by name (a driver from another package); they take precedence over built-in ones. */
  drivers?: Readonly<Record<string, StorageDriverFactory>>;
  /** Whether files are written as an unprivileged user (overlay then uses `user.` xattrs). Default: euid ≠ 0. */
  rootless?: boolean;
}

export interface ContainersStorageTransport extends Transport {
  readonly specificationVersion: TransportSpecificationVersion;
  readonly name: 'containers-storage';
  parseReference(reference: string): ContainersStorageReference;
}

function locationKey(location: StoreLocation): string {
  return JSON.stringify([
    location.driverName,
    location.graphRoot,
    location.runRoot,
    location.driverOptions,
    location.transientStore === true,
  ]);
}

export function createContainersStorageTransport(
  options: ContainersStorageTransportOptions = {},
): ContainersStorageTransport {
  const stores = new Map<string, Promise<ContainersStore>>();

  const openStore = (location: StoreLocation): Promise<ContainersStore> => {
    const key = locationKey(location);
    let store = stores.get(key);
    if (!store) {
      store = (async () => {
        const factory =
          options.drivers?.[location.driverName] ?? (await loadBuiltInDriver(location.driverName));
        if (!factory) {
          throw new GantryError(
            ErrorCodes.NotSupported,
            `containers-storage: storage driver "${location.driverName}" is not supported (vfs, overlay and btrfs are)`,
          );
        }
        const driver = factory({
          graphRoot: location.graphRoot,
          runRoot: location.runRoot,
          options: location.driverOptions,
          rootless: options.rootless ?? isRootless(),
        });
        return new ContainersStore(location, driver);
      })();
      store.catch(() => stores.delete(key));
      stores.set(key, store);
    }
    return store;
  };

  const openImage = async (reference: ContainersStorageReference, context?: TransportContext) => {
    const store = await openStore(reference.location);
    if (!(await store.exists())) throw imageNotFound(reference);
    const image = await store.withImages(false, (table) => findImage(table.records, reference), {
      signal: context?.signal,
    });
    if (!image) throw imageNotFound(reference);
    return { store, image };
  };

  const backend: ContainersStorageBackend = {
    openStore,
    imageIds(location) {
      try {
        return readImagesOfLocation(location).map((image) => image.id);
      } catch {
        return [];
      }
    },
    async newImageSource(reference, context): Promise<ImageSource> {
      const { store, image } = await openImage(reference, context);
      return new ContainersStorageSource(reference, store, image);
    },
    async newImageDestination(reference, context): Promise<ImageDestination> {
      const store = await openStore(reference.location);
      await store.initialize();
      return new ContainersStorageDestination(reference, store, context);
    },
    async deleteImage(reference, context): Promise<void> {
      const { store } = await openImage(reference, context);
      const signal = context?.signal;
      await store.withLayers(
        true,
        async (layers) => {
          const containers = await store.readContainers({ signal });
          await store.withImages(
            true,
            async (images) => {
              const image = findImage(images.records, reference);
              if (!image) throw imageNotFound(reference);
              const user = containers.find((container) => container.image === image.id);
              if (user) {
                throw new GantryError(
                  ErrorCodes.NotSupported,
                  `image ${image.id} is in use by container ${user.id}`,
                );
              }
              images.records.splice(images.records.indexOf(image), 1);
              images.save();
              await rm(store.imageDataDirectory(image.id), { recursive: true, force: true });
              // The image's layers, top first, as long as nothing else uses them.
              const used = new Set<string>();
              for (const other of images.records) {
                if (other.layer) used.add(other.layer);
                for (const mapped of other['mapped-layers'] ?? []) used.add(mapped);
              }
              for (const container of containers) if (container.layer) used.add(container.layer);
              const chain = image.layer ? layerChain(layers.records, image.layer) : [];
              let changed = false;
              for (const layer of chain.reverse()) {
                if (used.has(layer.id)) break;
                if (layers.records.some((other) => other.parent === layer.id)) break;
                await store.driver.removeLayer(layer.id);
                await rm(store.tarSplitPath(layer.id), { force: true });
                layers.records.splice(layers.records.indexOf(layer), 1);
                changed = true;
              }
              if (changed) layers.save();
            },
            { signal },
          );
        },
        { signal },
      );
    },
  };

  const transport: ContainersStorageTransport = {
    specificationVersion: transportSpecificationVersion,
    name: 'containers-storage',
    parseReference(reference: string): ContainersStorageReference {
      return parseContainersStorageReference(transport, backend, reference);
    },
    validatePolicyConfigurationScope(scope: string): void {
      validatePolicyConfigurationScope(scope);
    },
  };
  return transport;
}

/** The default `containers-storage:` transport instance. */
export const containersStorageTransport: ContainersStorageTransport = createContainersStorageTransport();
