/**
 * `@gantry/transport-docker/testing`: test helpers around a real registry (Debian's
 * `docker-registry`, CNCF Distribution 2.8). Test-only: not part of the built package.
 */
export {
  generateTestClientCertificate,
  generateTestTlsMaterial,
  generateTokenSigningMaterial,
  type TestTlsMaterial,
  type TokenSigningMaterial,
} from './certificates.js';
export {
  type FaultProxy,
  type HeaderFault,
  type ProxiedRequest,
  type ResponseFault,
  type StatusFault,
  startFaultProxy,
} from './fault-proxy.js';
export {
  type AccessLogEntry,
  registryBinary,
  startTestRegistry,
  type TestRegistry,
  type TestRegistryOptions,
} from './registry-server.js';
export {
  type ExtensionSignatureRecord,
  type SignatureExtensionServer,
  startSignatureExtensionServer,
} from './signature-extension-server.js';
export {
  createSigstoreTestSignature,
  createTestGpgKey,
  createTestSigstoreKey,
  fileUrl,
  runSkopeo,
  runTool,
  type SigstoreTestKey,
  type TestGpgKey,
  type TestRegistriesDirectorySection,
  verifySigstoreTestSignature,
  writeRegistriesDirectory,
  writeRequirementPolicy,
} from './signing.js';
export { buildImage, digestStream, dockerContext, pushFixture } from './test-helpers.js';
export {
  startTestTokenServer,
  type TestTokenServer,
  type TestTokenServerOptions,
  type TokenRequestRecord,
} from './token-server.js';
