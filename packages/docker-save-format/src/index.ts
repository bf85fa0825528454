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
  createDockerArchiveWriter,
  type DockerArchiveImageToAdd,
  DockerArchiveWriter,
  type DockerArchiveWriterOptions,
} from './writer.js';
