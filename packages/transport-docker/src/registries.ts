import {
  findRegistryConfiguration,
  loadRegistriesConfiguration,
  loadShortNameAliasCache,
  type RegistriesConfiguration,
  type RegistryConfiguration,
  type ShortNameAliasCache,
} from '@gantry/containers-config';
import { ErrorCodes, GantryError, type TransportContext } from '@gantry/core/transport';
import { memoForContext } from './context-memo.js';
import type { RegistryAccessSettings } from './registry-client.js';

/**
 * The registries configuration for a context (`context.registriesConfPath`, else the system's), read
 * once per context object for a while (see context-memo.ts).
 */
export function loadContextRegistriesConfiguration(
  context: TransportContext,
): Promise<RegistriesConfiguration> {
  const registriesConfPath = context.registriesConfPath;
  return memoForContext(context, `registries.conf\n${registriesConfPath ?? ''}`, () =>
    loadRegistriesConfiguration(registriesConfPath ? { registriesConfPath } : {}),
  );
}

/**
 * The user's short-name alias cache, as containers/image reads it: `short-name-aliases.conf` under
 * `/var/cache/containers` for root, else under `$XDG_CACHE_HOME/containers` or
 * `$HOME/.cache/containers`; missing reads as empty. Its aliases win over registries.conf's.
 */
export function loadContextShortNameAliasCache(context: TransportContext): Promise<ShortNameAliasCache> {
  return memoForContext(context, 'short-name-aliases.conf', () => loadShortNameAliasCache());
}

/**
 * The `[[registry]]` settings for a name (`registry/repository`), refusing blocked registries
 * before any network traffic (`ERR_GANTRY_POLICY_REJECTED`, naming the files that block it).
 */
export function registrySettingsFor(
  configuration: RegistriesConfiguration,
  name: string,
): RegistryConfiguration | undefined {
  const settings = findRegistryConfiguration(configuration, name);
  if (settings?.blocked) {
    const files = configuration.files.length > 0 ? configuration.files.join(', ') : 'registries.conf';
    throw new GantryError(ErrorCodes.PolicyRejected, `registry ${settings.prefix} is blocked in ${files}`);
  }
  return settings;
}

/**
 * Loads registries.conf for a context and returns the access settings for `name` (insecure,
 * credential helpers), refusing a blocked registry before any network traffic.
 */
export async function registryAccessFor(
  context: TransportContext,
  name: string,
): Promise<RegistryAccessSettings> {
  const configuration = await loadContextRegistriesConfiguration(context);
  const settings = registrySettingsFor(configuration, name);
  return { insecure: settings?.insecure ?? false, credentialHelpers: configuration.credentialHelpers };
}
