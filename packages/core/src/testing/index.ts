/**
 * `@gantry/core/testing`: deterministic fixture images, ways to put them into storage without a
 * transport, and the transport conformance suite. Test-only; never imported by production code.
 *
 * @packageDocumentation
 * @module @gantry/core/testing
 */

export { schema1SignedPayload } from '../manifest/digests.js';
export { gzippedEmptyLayerDigest } from '../manifest/edit.js';
export { schema1SignaturesVerify } from '../manifest/schema1-sign.js';
export { clearDeferredNodeExtraCertificateAuthorities } from '../tls-trust.js';
export {
  type ConformanceOptions,
  runTransportConformanceSuite,
  type TransportConformanceCapabilities,
  type TransportConformanceOptions,
} from './conformance.js';
export { type TestCredentialHelper, writeTestCredentialHelper } from './credential-helper.js';
export {
  buildFixtureImage,
  defaultFixtureCreated,
  defaultFixturePlatform,
  fixtureGzipLevel,
  isFixtureListSpec,
} from './fixture-builder.js';
export {
  type FixturePresetName,
  fixturePresets,
  listPresetNames,
  singleImagePresetNames,
} from './fixture-presets.js';
export {
  createFixtureImageSource,
  type FixtureSignatures,
  type WriteFixtureOptions,
  writeFixtureToDestination,
} from './fixture-source.js';
export type {
  BuildFixtureOptions,
  FixtureBlob,
  FixtureEntry,
  FixtureImage,
  FixtureImageSpec,
  FixtureLayerCompression,
  FixtureLayerSpec,
  FixtureListSpec,
  FixturePlatform,
  FixtureRunConfig,
} from './fixture-types.js';
export { createTestGpgKey, type TestGpgKey, type TestGpgKeyOptions } from './gpg.js';
export { ociRefNameAnnotation, writeFixtureToOciLayout } from './oci-layout.js';
export {
  outcomeLogEnvironmentVariable,
  recordOutcome,
  type TriedOutcome,
} from './outcome-log.js';
export { seededRandomBytes } from './random-data.js';
export { mountTestTmpfs, type TestMount } from './read-only-mount.js';
export { runSkopeo, skopeoBinary } from './skopeo.js';
