/**
 * `@gantry/oci-layout-format`: the OCI image layout format shared by the `oci:` (layout directories) and
 * `oci-archive:` (tarred layouts) transports: reference grammar, path resolution, policy scopes,
 * `index.json` and `oci-layout` parsing and writing, image selection, and what manifests reach.
 * Reading and writing files or tar entries stays in the transports.
 */
export {
  assertDestinationWritable,
  checkDestinationReference,
  layoutDestinationProperties,
  rejectSignatures,
  requireTopLevelEntry,
  reusedBlob,
} from './destination.js';
export {
  describeFileSystemError,
  errorCode,
  fileSystemFailure,
  randomSuffix,
  resolvePathToFullyExplicit,
} from './file-system.js';
export {
  blobEntryName,
  blobsDirectoryName,
  checkLayoutFile,
  checkManifestMatchesEntry,
  type GuessManifestMediaType,
  type IndexEntry,
  imageLayoutVersion,
  indexFileName,
  type LayoutIndex,
  layoutError,
  layoutFileContent,
  layoutFileName,
  maximumIndexSize,
  maximumLayoutFileSize,
  maximumManifestSize,
  parseDescriptor,
  parseIndex,
  parseJsonObject,
  readableEntryMediaTypes,
  referenceNameAnnotation,
  serializeIndex,
} from './layout.js';
export {
  instanceMediaType,
  listInstanceMediaTypes,
  type ManifestReferences,
  manifestReferences,
  manifestStorageDigest,
  reachableDigests,
} from './manifests.js';
export {
  cleanPath,
  isValidImageName,
  type LayoutPolicyScopeOptions,
  LayoutReferenceBase,
  type LayoutReferenceElements,
  parseLayoutReferenceElements,
  validateLayoutPolicyScope,
} from './reference.js';
export {
  addIndexEntry,
  findIndexEntry,
  type ImageSelector,
  type LayoutLocation,
  newIndexEntry,
  type PreviousNameHolder,
} from './selection.js';
