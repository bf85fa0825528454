import { availableParallelism } from 'node:os';
import * as zlib from 'node:zlib';

/** Options of {@link parallelGzipStage}. */
export interface ParallelGzipOptions {
  /** zlib level 0–9 (default 6, as `gzip`); 0 stores every block. */
  level?: number;
  /** Bytes of input compressed as one unit (default 1 MiB). Larger blocks compress slightly better. */
  blockSize?: number;
  /** Blocks compressed at once on the libuv thread pool (default: the number of CPUs, at least 2). */
  concurrency?: number;
}

/** Deflate's window: a block may refer back this far into the previous block's bytes. */
const windowSize = 32 * 1024;
/** The longest stored (uncompressed) deflate block. */
const maxStoredLength = 0xffff;
/** Slices of a block sampled to decide whether compressing it is worth the CPU. */
const sampleSliceLength = 4 * 1024;
const sampleSlices = 4;
/** A block is stored when at least this many of its sampled slices are dense. */
const denseSlicesToStore = 3;
/**
 * Bits of order-0 entropy per byte above which a 4 KiB slice counts as dense (random, encrypted or
 * already compressed data: ~7.95 measured on 4 KiB of random bytes, 5–6.5 on text and executables).
 * Huffman coding could save at most ~1 % on such data, and it rarely has the repeats LZ77 needs.
 * Judging slices one by one keeps a small header or padding (a tar entry's) from making a whole
 * block of random data look compressible.
 */
const denseEntropy = 7.9;
const defaultBlockSize = 1024 * 1024;

/**
 * The gzip member header: no name, no time, OS "unknown", as Go's compress/gzip (and so skopeo's
 * pgzip) writes it.
 */
const gzipHeader = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff]);
/** An empty final stored block: closes the deflate stream after blocks ended by a sync flush. */
const finalEmptyBlock = Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff]);

function deflateRawAsync(input: Uint8Array, options: zlib.ZlibOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    zlib.deflateRaw(input, options, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

/**
 * `block` as stored deflate blocks (no compression), byte-aligned like a sync flush leaves them:
 * at memory speed, for data that does not compress.
 */
function storedBlocks(block: Uint8Array): Buffer {
  const count = Math.ceil(block.byteLength / maxStoredLength);
  const output = Buffer.allocUnsafe(block.byteLength + count * 5);
  let written = 0;
  for (let offset = 0; offset < block.byteLength; offset += maxStoredLength) {
    const length = Math.min(maxStoredLength, block.byteLength - offset);
    output[written] = 0x00; // BFINAL 0, BTYPE 00 (stored), padded to the byte boundary.
    output.writeUInt16LE(length, written + 1);
    output.writeUInt16LE(~length & 0xffff, written + 3);
    output.set(block.subarray(offset, offset + length), written + 5);
    written += 5 + length;
  }
  return output;
}

/**
 * Whether `block` looks incompressible: most of a few slices spread over it are dense. A block
 * shorter than the sample is judged as a whole.
 */
export function looksIncompressible(block: Uint8Array): boolean {
  if (block.byteLength <= sampleSliceLength * sampleSlices) return entropyOf(block) > denseEntropy;
  const stride = Math.floor((block.byteLength - sampleSliceLength) / (sampleSlices - 1));
  let dense = 0;
  for (let slice = 0; slice < sampleSlices; slice += 1) {
    const start = slice * stride;
    if (entropyOf(block.subarray(start, start + sampleSliceLength)) > denseEntropy) dense += 1;
  }
  return dense >= denseSlicesToStore;
}

/** The order-0 (byte frequency) entropy of `bytes`, in bits per byte. */
function entropyOf(bytes: Uint8Array): number {
  // Written for V8's fast path (Int32Array counters, cached length, indexed loops): 5× faster than
  // the same with Uint32Array and for…of.
  const counts = new Int32Array(256);
  const length = bytes.length;
  for (let index = 0; index < length; index++) (counts[bytes[index] as number] as number)++;
  let entropy = 0;
  for (let value = 0; value < 256; value++) {
    const count = counts[value] as number;
    if (count !== 0) {
      const probability = count / length;
      entropy -= probability * Math.log2(probability);
    }
  }
  return entropy;
}

/** Compresses one block as raw deflate ending on a byte boundary (sync flush), never final. */
async function compressBlock(
  block: Uint8Array,
  dictionary: Uint8Array | undefined,
  level: number,
): Promise<Buffer> {
  if (level === 0) return storedBlocks(block);
  if (looksIncompressible(block)) return storedBlocks(block);
  const options: zlib.ZlibOptions = { level, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  if (dictionary) options.dictionary = dictionary;
  return deflateRawAsync(block, options);
}

/**
 * A pipeline stage that gzips its input using several threads, like pigz and Go's pgzip (which
 * skopeo uses): the input is cut into blocks that are deflated concurrently on the libuv thread
 * pool, each with the previous block's last 32 KiB as its dictionary (so the ratio stays close to a
 * single stream's) and ended by a sync flush, then written out in order as one gzip member with the
 * CRC-32 and length of the whole input. Blocks whose sampled slices mostly have near 8 bits of entropy per byte are stored as they
 * are, without spending CPU on them (already-compressed or random data). Memory is bounded by
 * `concurrency` blocks in flight, whatever the input's size.
 */
export function parallelGzipStage(
  options: ParallelGzipOptions = {},
): (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Uint8Array, void, undefined> {
  const level = options.level ?? 6;
  if (!Number.isInteger(level) || level < 0 || level > 9) {
    throw new RangeError(`gzip compression level must be an integer from 0 to 9, got ${level}`);
  }
  const blockSize = options.blockSize ?? defaultBlockSize;
  const concurrency = Math.max(1, options.concurrency ?? Math.max(2, availableParallelism()));
  return async function* gzipInParallel(source) {
    yield gzipHeader;
    let crc = 0;
    let totalLength = 0;
    let dictionary: Uint8Array | undefined;
    const inFlight: Promise<Buffer>[] = [];
    let pending: Uint8Array[] = [];
    let pendingLength = 0;
    const start = (block: Uint8Array): void => {
      crc = zlib.crc32(block, crc);
      totalLength += block.byteLength;
      const job = compressBlock(block, dictionary, level);
      job.catch(() => {}); // Awaited in order below; never left unhandled when the consumer stops.
      inFlight.push(job);
      dictionary = block.byteLength >= windowSize ? block.subarray(block.byteLength - windowSize) : block;
    };
    try {
      for await (const chunk of source) {
        let rest: Uint8Array = chunk;
        while (pendingLength + rest.byteLength >= blockSize) {
          const take = blockSize - pendingLength;
          pending.push(rest.subarray(0, take));
          rest = rest.subarray(take);
          const block = pending.length === 1 ? pending[0]! : Buffer.concat(pending, blockSize);
          // Chunks are not copied: a stream's chunks belong to its reader once passed on (Node streams'
          // rule), so views of them stay valid while the block is compressed.
          start(block);
          pending = [];
          pendingLength = 0;
          while (inFlight.length >= concurrency) yield await inFlight.shift()!;
        }
        if (rest.byteLength > 0) {
          pending.push(rest);
          pendingLength += rest.byteLength;
        }
      }
      if (pendingLength > 0)
        start(pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingLength));
      while (inFlight.length > 0) yield await inFlight.shift()!;
    } finally {
      inFlight.length = 0;
    }
    const trailer = Buffer.allocUnsafe(8);
    trailer.writeUInt32LE(crc >>> 0, 0);
    trailer.writeUInt32LE(totalLength % 2 ** 32, 4);
    yield Buffer.concat([finalEmptyBlock, trailer]);
  };
}
