export { parseSyncConfig, type SyncRegistryConfig } from './config.js';
export {
  compileTagPattern,
  newestTags,
  parseTagVersion,
  parseVersionConstraint,
  type TagPattern,
  tagsMatchingConstraint,
  type VersionConstraint,
} from './filters.js';
export { parseShard, type SyncShard, shardOf, validateShard } from './shard.js';
export { destinationReferenceFor } from './sources.js';
export { defaultSyncImageConcurrency, syncImages } from './sync.js';
export type {
  SyncDestinationKind,
  SyncImage,
  SyncImageResult,
  SyncOptions,
  SyncProgressEvent,
  SyncReportEntry,
  SyncResult,
  SyncSourceKind,
} from './types.js';
