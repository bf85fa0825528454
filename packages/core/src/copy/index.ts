export {
  compressingStage,
  createDecompressor,
  type DetectedCompression,
  detectCompression,
  zstdAvailable,
} from './compression.js';
export { copyImage, defaultBlobConcurrency, imageName } from './copy.js';
export {
  combineCrc32,
  defaultGzipLevel,
  type ParallelGzipOptions,
  parallelGzipStage,
} from './parallel-gzip.js';
export { maximumReferrerCount, maximumReferrerDepth, referrerDescriptorOf } from './referrers.js';
export { isRetryableError, type RetrySettings, retryDelay, withRetry } from './retry.js';
export type {
  CopiedBlobKind,
  CopyOptions,
  CopyProgressEvent,
  CopyResult,
  ImageListSelection,
} from './types.js';
