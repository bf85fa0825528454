/**
 * The auth-file API of `@gantry/core`'s config module. TEMPORARY: until `@gantry/core`'s top-level
 * index exports `config/`, it is imported by path; then this file becomes
 * `export { findRegistryCredentials } from '@gantry/core';`.
 */
export { findRegistryCredentials } from '../../core/src/config/index.js';
