/**
 * `@gantry/tar-archive`: random-access reading of tar archives through a header index, with checks against
 * hostile archives, and a streaming tar writer. Shared by the archive transports.
 */
export {
  type ArchiveCompression,
  compressionMagicLength,
  createArchiveDecompressor,
  detectArchiveCompression,
} from './compression.js';
export {
  type BeginTarEntryOptions,
  fitsUstarHeader,
  type OpenTarEntry,
  SeekableTarWriter,
} from './file-writer.js';
export { normalizeEntryName, resolveHardlinkTarget, resolveSymlinkTarget, rootEntryName } from './names.js';
export {
  defaultMetadataSizeLimit,
  type OpenTarArchiveOptions,
  openTarArchive,
  openTarArchiveFromStream,
  type ReadEntryOptions,
  TarArchiveReader,
  type TarEntry,
  type TarEntryType,
} from './reader.js';
export {
  createTarWriter,
  type SpoolFile,
  spoolToTemporaryFile,
  type TarEntryOptions,
  TarWriter,
  type TarWriterOptions,
} from './writer.js';
