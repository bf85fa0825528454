/**
 * `@gantry/core/transport`: what a transport package needs. The contract ({@link Transport},
 * {@link ImageReference}, {@link ImageSource}, {@link ImageDestination}, their options and the version
 * literal), errors, digests and the stream stages that verify blobs, owned temporary files, file system
 * helpers worded as Go's, docker reference parsing, manifest parsing and media types, decompression,
 * and the certificate authorities to trust.
 *
 * A transport package exports a factory and a default instance; applications list it in a
 * `TransportRegistry` (from `@gantry/core`), or the `gantry` command discovers it by its package name
 * (`gantry-transport-<name>`, `@scope/gantry-transport-<name>`) and its package.json
 * `"gantry": { "transports": ["<name>"] }`. `@gantry/core/testing` runs the conformance suite on it.
 * The names exported here are listed in `api/transport.exports.txt`; a test keeps the two equal.
 *
 * @packageDocumentation
 * @module @gantry/core/transport
 */

export type { BlobInfoCache, CachedCompression } from '../copy/blob-info-cache.js';
export {
  BufferPool,
  compressorInputBuffers,
  fileReadBuffers,
  type LargeReadBuffers,
  type ReadBufferReader,
  ReadBuffers,
  releaseReadChunk,
  releaseResponseHead,
  socketReadBuffers,
} from '../copy/buffer-pool.js';
export {
  type CompressionFormat,
  createDecompressor,
  type DetectedCompression,
  detectCompression,
} from '../copy/compression.js';
export { HugePageArena, type HugePageSystem, hugePageBytes } from '../copy/huge-page-arena.js';
export { type PooledFileStreamOptions, pooledFileStream } from '../copy/pooled-file-stream.js';
export { handBackWrittenChunks } from '../copy/written-chunks.js';
export {
  blobWriteStage,
  canonicalDigestAlgorithm,
  type Digest,
  type DigestAlgorithm,
  Digester,
  digestAlgorithm,
  digestAlgorithms,
  digestHex,
  digestingStage,
  digestOf,
  isDigest,
  parseDigest,
  type VerifyOptions,
  verifyingStage,
} from '../digest.js';
export {
  abortError,
  type ErrorCode,
  ErrorCodes,
  GantryError,
  type GantryErrorOptions,
  hasErrorCode,
  isGantryError,
  throwIfAborted,
} from '../errors.js';
export {
  defaultExpansionLimit,
  ExpansionGuard,
  type ExpansionLimit,
  expansionLimitFromEnvironment,
} from '../expansion-limit.js';
export {
  describeFileSystemError,
  errorCode,
  makeDirectories,
  resolvePathToFullyExplicit,
} from '../file-system.js';
export { type ImageConfig, parseImageConfig } from '../manifest/config.js';
export {
  guessManifestMediaType,
  manifestDigest,
  manifestMatchesDigest,
  normalizeManifestMediaType,
} from '../manifest/digests.js';
export { layerMediaTypeFor, type TargetCompression } from '../manifest/edit.js';
export { goJsonMarshal, goJsonMarshalWithRaw, RawJson } from '../manifest/go-json.js';
export {
  allManifestMediaTypes,
  isManifestListMediaType,
  type KnownMediaType,
  MediaTypes,
  manifestListMediaTypes,
  singleImageManifestMediaTypes,
} from '../manifest/media-types.js';
export {
  type ImageManifest,
  type LayerCompression,
  type LayerInfo,
  type ManifestList,
  type ManifestListInstance,
  type Platform,
  parseManifest,
  parseManifestList,
} from '../manifest/parse.js';
export { choosePlatformInstance, hostPlatform, wantedPlatform } from '../manifest/platform.js';
export { OffThreadDigester, offThreadDigestAvailable } from '../off-thread-digester.js';
export { type LockPathOptions, lockPath, type PathLock, pathLockFile } from '../path-lock.js';
export { readableChunks } from '../readable-chunks.js';
export {
  defaultDockerDomain,
  defaultDockerTag,
  enclosingNamespaces,
  familiarName,
  familiarString,
  isNameOnly,
  parseNamed,
  parseNormalizedNamed,
  parseReferenceGrammar,
  tagNameOnly,
  trimToName,
  validateTag,
  withDigest,
  withTag,
} from '../reference/reference.js';
export type { DockerReference } from '../reference/types.js';
export {
  parseStoredSignature,
  type SigstoreSignature,
  type StoredSignature,
  sigstoreCertificateAnnotation,
  sigstoreChainAnnotation,
  sigstoreSetAnnotation,
  sigstoreSignatureAnnotation,
  sigstoreSignatureBlob,
  sigstoreSignatureMimeType,
} from '../signature/stored.js';
export { Crc64, crc64 } from '../tar/crc64.js';
export { type TarEntry, type TarEntryType, type TarHeader, TarStreamReader } from '../tar/tar-reader.js';
export { cleanPath, goJsonString, TarSplitLines, type TarSplitStyle } from '../tar/tar-split-lines.js';
export {
  makeOwnedTemporaryDirectory,
  ownedTemporaryName,
  parseOwnedTemporaryName,
  type RemoveAbandonedOptions,
  removeAbandonedTemporaryFiles,
  type TemporaryOwner,
  type TemporaryOwnerState,
  temporaryOwnerState,
} from '../temporary-files.js';
export { defaultCertificateAuthorities, deferredNodeExtraCertificateAuthoritiesPath } from '../tls-trust.js';
export {
  type BlobInfo,
  type BlobStream,
  type BlobToWrite,
  type CommitOptions,
  type ImageDestination,
  type ImageDestinationProperties,
  type ImageReference,
  type ImageSource,
  type ImageSourceProperties,
  type ListReferrersOptions,
  type ManifestBlob,
  type OperationOptions,
  type PlatformOverrides,
  type PutBlobOptions,
  type PutManifestOptions,
  type ReferrerDescriptor,
  type ReusedBlob,
  type Transport,
  type TransportContext,
  type TransportSpecificationVersion,
  type TryReusingBlobOptions,
  transportSpecificationVersion,
} from './contract.js';
export { transportOptionsOf } from './options.js';
export {
  assertTransport,
  formatImageReference,
  type RegisteredTransport,
  splitTransportReference,
  TransportRegistry,
} from './registry.js';
