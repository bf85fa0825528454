/**
 * `@gantry/plugin-loader`: a `TransportRegistry` of the Gantry transports installed beside a program,
 * found the way the `gantry` command finds them. Discovery reads package.json files only; a transport
 * package is imported when a reference first names its transport.
 *
 * ```ts
 * import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
 * import { createInstalledTransportLoader } from '@gantry/plugin-loader';
 *
 * const transports = createInstalledTransportLoader();
 * const registry = await transports(['docker', 'oci']); // imports @gantry/transport-docker and -oci only
 * await copyImage(
 *   registry.parseImageReference('docker://registry.example/app:1.0'),
 *   registry.parseImageReference('oci:/srv/layout:app'),
 *   { policy: insecureAcceptAnythingPolicy() },
 * );
 * ```
 *
 * This package is separate from `@gantry/core` because importing a package found at run time needs an
 * `import()` of a computed file URL, which bundlers cannot follow: a program that lists its transports
 * in a `TransportRegistry` itself bundles cleanly and does not need it.
 *
 * @packageDocumentation
 * @module @gantry/plugin-loader
 */
import type { TransportRegistry } from '@gantry/core/transport';
import { createTransportLoader, type DiscoverOptions } from './discovery.js';

export {
  type BundledTransportPackage,
  configFilePath,
  createTransportLoader,
  type DiscoverOptions,
  discoverTransportPlugins,
  isTransportPackageName,
  loadTransportRegistry,
  nodeModulesDirectories,
  type PluginCandidate,
  type PluginSource,
  pluginImporterKey,
  resolvePackageEntry,
  transportNameHint,
  transportNamesOf,
  transportsFromModule,
} from './discovery.js';

/** Options of {@link createInstalledTransportLoader}; every member has a default. */
export interface InstalledTransportsOptions extends Partial<Omit<DiscoverOptions, 'warn'>> {
  /** Called for each plugin that cannot be used (default: `process.emitWarning`). */
  warn?: (message: string) => void;
}

/**
 * A loader of the installed transports: `load(names)` resolves to a registry holding at least the named
 * transports that are installed (importing only the packages that may provide them), `load()` to one
 * holding every installed transport. Packages are searched from `searchFrom` (default the working
 * directory) up to the root, plus those `GANTRY_TRANSPORTS` and `~/.config/gantry/config.json` name,
 * as the `gantry` command does. A package that fails to load is reported through `warn` and skipped.
 */
export function createInstalledTransportLoader(
  options: InstalledTransportsOptions = {},
): (names?: readonly string[]) => Promise<TransportRegistry> {
  const cwd = options.cwd ?? process.cwd();
  return createTransportLoader({
    ...options,
    env: options.env ?? process.env,
    cwd,
    searchFrom: options.searchFrom ?? cwd,
    warn: options.warn ?? ((message) => process.emitWarning(message, 'GantryTransportWarning')),
  });
}

/** Every installed transport, imported now (see {@link createInstalledTransportLoader}). */
export async function loadInstalledTransports(
  options: InstalledTransportsOptions = {},
): Promise<TransportRegistry> {
  return createInstalledTransportLoader(options)();
}
