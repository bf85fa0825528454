export {
  type ImageConfig,
  type InspectConfigFields,
  inspectConfigFields,
  ociConfigBytesFromDockerConfig,
  parseImageConfig,
} from './config.js';
export {
  guessManifestMediaType,
  manifestDigest,
  manifestMatchesDigest,
  normalizeManifestMediaType,
  schema1SignedPayload,
} from './digests.js';
export {
  conversionCandidates,
  type EditedManifest,
  editManifest,
  editManifestList,
  gzippedEmptyLayer,
  gzippedEmptyLayerDigest,
  type LayerEdit,
  layerMediaTypeFor,
  type ManifestEdit,
  type ManifestListEdit,
  needsLayerDiffIds,
  type TargetCompression,
} from './edit.js';
export {
  goJsonCompactRaw,
  goJsonMarshal,
  goJsonMarshalIndent,
  goJsonMarshalWithRaw,
  goJsonString,
  RawJson,
} from './go-json.js';
export {
  buildInspectConfigOutput,
  buildInspectOutput,
  formatInspectJson,
  type InspectInput,
} from './inspect.js';
export * from './media-types.js';
export {
  type ImageManifest,
  type LayerCompression,
  type LayerInfo,
  layerCompressionOf,
  type ManifestList,
  type ManifestListInstance,
  type Platform,
  parseManifest,
  parseManifestList,
} from './parse.js';
export {
  choosePlatformInstance,
  type HostDescription,
  hostPlatform,
  wantedPlatform,
  wantedPlatforms,
} from './platform.js';
export { libtrustKeyId, schema1SignaturesVerify, signSchema1Manifest } from './schema1-sign.js';
