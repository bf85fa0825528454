/**
 * `@gantry/docker-save-format`: the `docker save` archive format (read and write), shared by the
 * `docker-archive:` and `docker-daemon:` transports.
 */
export {
  digestFromBlobPath,
  type LayerSourceDescriptor,
  legacyConfigFileName,
  legacyLayerFileName,
  legacyVersionFileName,
  type ManifestItem,
  manifestFileName,
  parseManifestJson,
  parseRepositories,
  rawJsonMembers,
  repositoriesFileName,
} from './format.js';
export {
  type DockerArchiveDestinationSettings,
  DockerArchiveImageDestinationBase,
  dockerArchiveDestinationProperties,
  parseDockerSchema2Manifest,
} from './image-destination.js';
export { DockerArchiveImageSource } from './image-source.js';
export {
  type ArchiveLayerCompression,
  createArchiveDecompressor,
  type DockerArchiveImage,
  type DockerArchiveLayer,
  DockerArchiveReader,
  detectArchiveCompression,
  listArchiveImages,
  type OpenDockerArchiveOptions,
  openDockerArchive,
  openDockerArchiveFromStream,
} from './reader.js';
export {
  type DockerArchiveReferenceBackendOf,
  DockerArchiveReferenceBase,
  invalidReferenceError,
  parseRepoTag,
  refusePolicyScope,
  repoTagOf,
} from './reference.js';
export {
  createDockerArchiveWriter,
  type DockerArchiveImageToAdd,
  type DockerArchiveOutput,
  DockerArchiveWriter,
  type DockerArchiveWriterOptions,
} from './writer.js';
