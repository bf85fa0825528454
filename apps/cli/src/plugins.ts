/**
 * The `gantry` command's transport plugins: `@gantry/plugin-loader`'s discovery (see its module
 * comment for the sources and their precedence), searched from the CLI package's directory and with the
 * transport packages built into the CLI's bundle (`bundled-transports.ts`).
 */
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TransportRegistry } from '@gantry/core';
import {
  createTransportLoader as createLoader,
  type DiscoverOptions,
  discoverTransportPlugins as discover,
  type PluginCandidate,
} from '@gantry/plugin-loader';
import { bundledTransportPackages } from './bundled-transports.js';

export {
  configFilePath,
  type DiscoverOptions,
  isTransportPackageName,
  type PluginCandidate,
  pluginImporterKey,
  transportNameHint,
  transportNamesOf,
  transportsFromModule,
} from '@gantry/plugin-loader';

/** The CLI package directory (the parent of `src/` or `dist/`). */
export function cliPackageDirectory(): string {
  return dirname(dirname(fileURLToPath(import.meta.url)));
}

/** The options with the CLI's defaults: search from the CLI package, with the bundle's transports. */
function withCliDefaults(options: DiscoverOptions): DiscoverOptions {
  return {
    ...options,
    searchFrom: options.searchFrom ?? cliPackageDirectory(),
    bundled: options.bundled ?? bundledTransportPackages,
  };
}

/** Lists plugin candidates without importing them (`@gantry/plugin-loader`'s, with the CLI's defaults). */
export function discoverTransportPlugins(options: DiscoverOptions): PluginCandidate[] {
  return discover(withCliDefaults(options));
}

/** Loads transports on demand (`@gantry/plugin-loader`'s `createTransportLoader`, with the CLI's defaults). */
export function createTransportLoader(
  options: DiscoverOptions,
): (wanted?: readonly string[]) => Promise<TransportRegistry> {
  return createLoader(withCliDefaults(options));
}

/** Discovers, imports and registers every transport plugin (what `gantry transports` shows). */
export async function loadTransportRegistry(options: DiscoverOptions): Promise<TransportRegistry> {
  return createTransportLoader(options)();
}
