export { type ApplyLayerOptions, type ApplyLayerResult, applyLayer, type IdMapping } from './apply.js';
export { type CopyTreeOptions, copyTree, copyTreeAsync } from './copy-tree.js';
export { Crc64, crc64 } from './crc64.js';
export { type DisassembleResult, disassembleTar } from './disassemble.js';
export { layerError } from './errors.js';
export { pathFileGetter } from './file-getter.js';
export { fileWriterMode, fileWriterRunning, startFileWriter } from './file-writer.js';
export { NativeCallError, type NativeCalls, nativeCalls } from './native.js';
export { type TarEntry, type TarEntryType, type TarHeader, TarStreamReader } from './tar-reader.js';
export {
  type AssembleOptions,
  assembleTar,
  assembleTarChunks,
  cleanPath,
  defaultTarSplitStyle,
  goJsonString,
  readTarSplit,
  type TarSplitEntry,
  type TarSplitFileGetter,
  type TarSplitStyle,
  TarSplitWriter,
} from './tar-split.js';
