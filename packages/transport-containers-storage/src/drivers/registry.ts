/**
 * The built-in storage drivers, loaded on first use by name.
 */
import type { StorageDriverFactory } from './driver.js';

const builtInDrivers: Record<string, () => Promise<StorageDriverFactory>> = {};

/** The factory of built-in driver `name`, or undefined when there is no such driver. */
export async function loadBuiltInDriver(name: string): Promise<StorageDriverFactory | undefined> {
  const loader = builtInDrivers[name];
  return loader ? loader() : undefined;
}
