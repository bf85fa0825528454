/**
 * `@gantry/core`: copy, inspect, delete, list and sync container images from a Node.js program.
 *
 * Install `@gantry/core` and the transports you need (`@gantry/transport-docker`,
 * `@gantry/transport-oci`, …), list them in a {@link TransportRegistry}, parse `transport:reference`
 * strings with it, and pass the references to the operations:
 *
 * ```ts
 * import { copyImage, inspectImage, insecureAcceptAnythingPolicy, TransportRegistry } from '@gantry/core';
 * import { ociTransport } from '@gantry/transport-oci';
 * import { dockerTransport } from '@gantry/transport-docker';
 *
 * const transports = new TransportRegistry([ociTransport, dockerTransport]);
 * const source = transports.parseImageReference('docker://registry.example/app:1.0');
 * const destination = transports.parseImageReference('oci:/srv/layout:app');
 * await copyImage(source, destination, { policy: insecureAcceptAnythingPolicy() });
 * console.log((await inspectImage(destination)).Digest);
 * ```
 *
 * Every operation takes an `AbortSignal` (`signal`, or the transport context's), rejects with a
 * {@link GantryError} whose `code` is one of {@link ErrorCodes}, and reports progress through a callback
 * where it has any. Transport authors use `@gantry/core/transport`; tests use `@gantry/core/testing`.
 * The names exported here are listed in `api/index.exports.txt`; a test keeps the two equal.
 *
 * @packageDocumentation
 * @module @gantry/core
 */

export {
  type BlobInfoCache,
  type CachedCompression,
  DiskBlobInfoCache,
  defaultBlobInfoCachePath,
  MemoryBlobInfoCache,
} from './copy/blob-info-cache.js';
export type { CompressionFormat } from './copy/compression.js';
export { copyImage, defaultBlobConcurrency } from './copy/copy.js';
export { isRetryableError, type RetrySettings, withRetry } from './copy/retry.js';
export type {
  CopiedBlobKind,
  CopyOptions,
  CopyProgressEvent,
  CopyResult,
  ImageListSelection,
} from './copy/types.js';
export { type Digest, isDigest, parseDigest } from './digest.js';
export {
  type ErrorCode,
  ErrorCodes,
  GantryError,
  type GantryErrorOptions,
  hasErrorCode,
  isGantryError,
} from './errors.js';
export { manifestDigest } from './manifest/digests.js';
export {
  formatInspectJson,
  type ImageInspection,
  type InspectedLayer,
} from './manifest/inspect.js';
export type { Platform } from './manifest/parse.js';
export type { ImageOperationOptions } from './operations/common.js';
export { deleteImage } from './operations/delete.js';
export {
  type InspectImageOptions,
  inspectImage,
  inspectImageConfig,
  readImageConfig,
  readImageManifest,
  type StoredManifest,
} from './operations/inspect.js';
export { type ListedTags, listTags } from './operations/list-tags.js';
export {
  type DefaultPolicyOptions,
  defaultPolicyPath,
  loadDefaultPolicy,
  loadPolicy,
} from './policy/load.js';
export { insecureAcceptAnythingPolicy, parsePolicy } from './policy/parse.js';
export type {
  Policy,
  PolicyReferenceMatch,
  PolicyRequirement,
  PolicyRequirementType,
  PolicyTransportScopes,
  SignedByKeyType,
  SigstoreFulcio,
  SigstorePki,
} from './policy/types.js';
export {
  familiarName,
  familiarString,
  isNameOnly,
  parseNamed,
  parseNormalizedNamed,
  tagNameOnly,
  trimToName,
  validateTag,
  withDigest,
  withTag,
} from './reference/reference.js';
export type { DockerReference } from './reference/types.js';
export type { UntrustedPayload } from './signature/payload.js';
export type { SigningOptions } from './signature/sign.js';
export { generateSigstoreKeyPair, type SigstoreKeyPair } from './signature/sigstore.js';
export {
  type GpgPublicKeys,
  readGpgPublicKeys,
  readUntrustedSimpleSigningSignature,
  signSimpleSigning,
  type UntrustedSignatureInformation,
  type VerifiedSignature,
} from './signature/simple-signing.js';
export { verifyStandaloneSignature } from './signature/standalone.js';
export { type VerifiedImage, type VerifyImageOptions, verifyImage } from './signature/verify-image.js';
export { parseSyncConfig, type SyncRegistryConfig } from './sync/config.js';
export { parseShard, type SyncShard } from './sync/shard.js';
export { syncImages } from './sync/sync.js';
export type {
  SyncDestinationKind,
  SyncImage,
  SyncImageResult,
  SyncOptions,
  SyncProgressEvent,
  SyncReportEntry,
  SyncResult,
  SyncSourceKind,
} from './sync/types.js';
export { deferNodeExtraCertificateAuthorities, deferredNodeExtraCaCertsVariable } from './tls-trust.js';
export type {
  ImageReference,
  ImageSource,
  PlatformOverrides,
  Transport,
  TransportContext,
} from './transport/contract.js';
export {
  formatImageReference,
  type RegisteredTransport,
  splitTransportReference,
  TransportRegistry,
} from './transport/registry.js';
