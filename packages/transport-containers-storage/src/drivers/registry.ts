/**
 * The built-in storage drivers, loaded on first use by name.
 */
import type { StorageDriverFactory } from './driver.js';

const builtInDrivers: Record<string, () => Promise<StorageDriverFactory>> = {
  vfs: async () => (await import('./vfs.js')).createVfsDriver,
  overlay: async () => (await import('./overlay.js')).createOverlayDriver,
  btrfs: async () => (await import('./btrfs.js')).createBtrfsDriver,
};

/** The factory of built-in driver `name`, or undefined when there is no such driver. */
export async function loadBuiltInDriver(name: string): Promise<StorageDriverFactory | undefined> {
  const loader = builtInDrivers[name];
  return loader ? loader() : undefined;
}
