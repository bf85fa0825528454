export * from './media-types.js';
export {
  guessManifestMediaType,
  manifestDigest,
  manifestMatchesDigest,
  normalizeManifestMediaType,
  schema1SignedPayload,
} from './digests.js';
export {
  type ImageManifest,
  type LayerCompression,
  type LayerInfo,
  type ManifestList,
  type ManifestListInstance,
  type Platform,
  layerCompressionOf,
  parseManifest,
  parseManifestList,
} from './parse.js';
export { type HostDescription, choosePlatformInstance, hostPlatform, wantedPlatform, wantedPlatforms } from './platform.js';
export {
  type EditedManifest,
  type LayerEdit,
  type ManifestEdit,
  type ManifestListEdit,
  type TargetCompression,
  conversionCandidates,
  editManifest,
  editManifestList,
  layerMediaTypeFor,
  needsLayerDiffIds,
} from './edit.js';
export { type ImageConfig, type InspectConfigFields, inspectConfigFields, ociConfigBytesFromDockerConfig, parseImageConfig } from './config.js';
export { type InspectInput, buildInspectConfigOutput, buildInspectOutput, formatInspectJson } from './inspect.js';
export { goJsonMarshal, goJsonMarshalIndent, goJsonString } from './go-json.js';
