export {
  type BlobInfoCache,
  type CachedCompression,
  DiskBlobInfoCache,
  defaultBlobInfoCachePath,
  MemoryBlobInfoCache,
} from './blob-info-cache.js';
export {
  type CompressionFormat,
  compressingStage,
  createCompressor,
  createDecompressor,
  type DetectedCompression,
  defaultZstdLevel,
  detectCompression,
  type ZstdImplementation,
  zstdAvailable,
  zstdDecompressionImplementation,
  zstdImplementation,
} from './compression.js';
export { copyImage, defaultBlobConcurrency, imageName } from './copy.js';
export {
  combineCrc32,
  defaultGzipLevel,
  defaultLibdeflateGzipLevel,
  type GzipImplementation,
  gzipImplementation,
  type ParallelGzipOptions,
  parallelGzipStage,
} from './parallel-gzip.js';
export { type ParallelZstdOptions, parallelZstdAvailable, parallelZstdStage } from './parallel-zstd.js';
export { maximumReferrerCount, maximumReferrerDepth, referrerDescriptorOf } from './referrers.js';
export { isRetryableError, type RetrySettings, retryDelay, withRetry } from './retry.js';
export type {
  CopiedBlobKind,
  CopyOptions,
  CopyProgressEvent,
  CopyResult,
  ImageListSelection,
} from './types.js';
