/**
 * The auth-file API of `@gantry/core`'s config module. TEMPORARY: until `@gantry/core`'s top-level
 * index exports `config/`, it is imported by path; then this file becomes
 * the same list re-exported from `'@gantry/core'`.
 */
export {
  findRegistryConfiguration,
  findRegistryCredentials,
  loadRegistriesConfiguration,
  pullSourcesFor,
  type RegistriesConfiguration,
  type RegistryConfiguration,
} from '../../core/src/config/index.js';
