export { copyImage, defaultBlobConcurrency, imageName } from './copy.js';
export { isRetryableError, retryDelay } from './retry.js';
export type {
  CopiedBlobKind,
  CopyOptions,
  CopyProgressEvent,
  CopyResult,
  ImageListSelection,
} from './types.js';
