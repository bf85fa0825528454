export {
  type AuthFileContents,
  type AuthFileLocation,
  type AuthFileSearchOptions,
  authFileSearchPaths,
  credentialsLookupKeys,
  type FoundRegistryCredentials,
  findRegistryCredentials,
  primaryAuthFilePath,
  type RegistryCredentials,
  readAuthFile,
  runDockerCredentialHelper,
  validateCredentialsKey,
} from './auth-file.js';
