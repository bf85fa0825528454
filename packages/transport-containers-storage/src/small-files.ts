/**
 * Whether a layer blob begins with small regular files, judged from its first bytes: layer-tree writes
 * new files of up to 256 KiB on its file-writing worker, and a layer that starts with such files will
 * start that worker (see layer-tree's file-writer.ts). The destination starts it ahead (while the layer's
 * incomplete record is being synced), so that the worker's own start-up is not in the way of the first
 * files; a layer of large files does not start it at all.
 *
 * Only the headers found whole in the first bytes are looked at (gzip input is inflated as far as it
 * goes; zstd and anything unreadable count as no): a hint, never a decision about the layer's contents.
 */
import { constants, gunzipSync } from 'node:zlib';
import { detectCompression } from '@gantry/core/transport';

/** How many bytes of the blob are looked at. */
export const smallFilesPrefixLength = 2048;
/** Files up to this size are written on layer-tree's file-writing worker. */
const workerFileMaxSize = 256 * 1024;
const blockSize = 512;

/** The numeric field of a tar header: octal digits (space or NUL ended), or base-256 (top bit set). */
function headerNumber(header: Uint8Array, offset: number, length: number): number {
  if ((header[offset]! & 0x80) !== 0) {
    let value = header[offset]! & 0x7f;
    for (let index = 1; index < length; index++) value = value * 256 + header[offset + index]!;
    return value;
  }
  let value = 0;
  for (let index = 0; index < length; index++) {
    const byte = header[offset + index]!;
    if (byte === 0x20 && value === 0) continue;
    if (byte < 0x30 || byte > 0x37) break;
    value = value * 8 + (byte - 0x30);
  }
  return value;
}

/**
 * True when one of the tar entries whose header lies in `prefix` (the blob's first bytes: a tar,
 * possibly gzip-compressed) is a regular file of at most 256 KiB.
 */
export function beginsWithSmallFiles(prefix: Uint8Array): boolean {
  let tar: Uint8Array;
  try {
    const compression = detectCompression(prefix);
    if (compression === 'gzip') {
      tar = gunzipSync(prefix, { finishFlush: constants.Z_SYNC_FLUSH });
    } else if (compression === 'none') {
      tar = prefix;
    } else {
      return false;
    }
  } catch {
    return false;
  }
  for (let offset = 0; offset + blockSize <= tar.length; ) {
    const header = tar.subarray(offset, offset + blockSize);
    if (header.every((byte) => byte === 0)) return false;
    // "ustar" magic at 257: anything else is not a tar header this looks into.
    if (header[257] !== 0x75 || header[258] !== 0x73 || header[259] !== 0x74) return false;
    const type = header[156];
    const size = headerNumber(header, 124, 12);
    if ((type === 0x30 || type === 0) && size <= workerFileMaxSize) return true;
    offset += blockSize + Math.ceil(size / blockSize) * blockSize;
  }
  return false;
}
