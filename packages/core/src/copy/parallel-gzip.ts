import { availableParallelism } from 'node:os';
import * as zlib from 'node:zlib';
import { bufferPoolOf, scratchBuffer, transientBuffers } from './buffer-pool.js';
import { type LentOutputBuffers, lentOutputBuffersOf } from './lent-output-buffers.js';
import { type Libdeflate, libdeflate } from './libdeflate.js';

/** Options of {@link parallelGzipStage}. */
export interface ParallelGzipOptions {
  /**
   * Level 0–9; 0 stores every block. With libdeflate (see `gzipImplementation`) the default is its level
   * 2: ~4 % smaller than skopeo's default output on an executable (klauspost/pgzip at its default level,
   * which is klauspost/compress flate's level 5, in 1 MiB blocks) for about half the CPU of zlib's level
   * 3; its level 1 is ~2 % larger than skopeo's output. With node:zlib the default is 3: zlib's level 3
   * gives about the size skopeo's default gives, at the same CPU; level 6 (`gzip`'s default) gives ~5 %
   * less and takes 1.5 times the CPU.
   */
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
/** The default `blockSize`. */
export const defaultGzipBlockSize = 1024 * 1024;
/** The default level with node:zlib; see `ParallelGzipOptions.level`. */
export const defaultGzipLevel = 3;
/** The default level with libdeflate; see `ParallelGzipOptions.level`. */
export const defaultLibdeflateGzipLevel = 2;

/** What compresses gzip blocks: libdeflate (one gzip member per block) or node:zlib (one member). */
export type GzipImplementation = 'libdeflate' | 'node:zlib';

/**
 * The gzip implementation this process uses: libdeflate when koffi and the system's libdeflate load,
 * else node:zlib. `GANTRY_GZIP_IMPLEMENTATION=node:zlib` chooses node:zlib.
 */
export function gzipImplementation(): GzipImplementation {
  return libdeflate() ? 'libdeflate' : 'node:zlib';
}

/**
 * The gzip member header: no name, no time, OS "unknown", as Go's compress/gzip (and so skopeo's
 * pgzip) writes it.
 */
const gzipHeader = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff]);
/** An empty final stored block: closes the deflate stream after blocks ended by a sync flush. */
const finalEmptyBlock = Buffer.from([0x01, 0x00, 0x00, 0xff, 0xff]);

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

/** One compressed block: raw deflate ending on a byte boundary, never final, and its input's CRC-32. */
interface CompressedBlock {
  deflate: Uint8Array;
  crc: number;
  length: number;
}

/**
 * Room for all of a block's compressed output in one chunk (zlib's deflateBound plus stored block
 * headers and gzip framing): the convenience functions would otherwise collect 16 KiB chunks, each
 * one a callback here, and join them with a copy on this thread.
 */
function outputChunkSize(input: Uint8Array): number {
  return input.byteLength + (input.byteLength >> 10) + Math.ceil(input.byteLength / 0xffff) * 5 + 1024;
}

/**
 * Runs one zlib engine over all of `input` at once, with `Z_FINISH` (or the given flush) as the flush
 * of that single write, so the output comes as one chunk of the engine's own buffer (the convenience
 * functions `zlib.gzip` and `zlib.deflateRaw` join their output with a copy on this thread).
 */
function runEngine(engine: zlib.Gzip | zlib.DeflateRaw, input: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    engine.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.byteLength;
    });
    engine.once('error', reject);
    engine.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length)));
    engine.end(input);
  });
}

/**
 * `block` as stored deflate blocks, made on the libuv thread pool: zlib at level 0 writes a gzip
 * member of stored blocks, whose trailer holds the CRC-32 the pool computed. The member's header and
 * trailer are cut off and its last block made non-final, so that the blocks can be followed by more.
 * Returns undefined if the member is not made of stored blocks only (never seen; the caller then
 * stores the block on this thread).
 */
async function storedBlocksOnThreadPool(block: Uint8Array): Promise<CompressedBlock | undefined> {
  const member = await runEngine(
    zlib.createGzip({ level: 0, chunkSize: outputChunkSize(block), flush: zlib.constants.Z_FINISH }),
    block,
  );
  const headerLength = 10;
  const trailerStart = member.byteLength - 8;
  if (trailerStart < headerLength || member[0] !== 0x1f || member[1] !== 0x8b || member[3] !== 0) {
    return undefined;
  }
  let offset = headerLength;
  let last = -1;
  while (offset < trailerStart) {
    const blockHeader = member[offset]!;
    // BFINAL in bit 0, BTYPE 00 (stored) in bits 1-2, the rest padding up to the byte boundary.
    if ((blockHeader & 0xfe) !== 0 || offset + 5 > trailerStart) return undefined;
    const length = member.readUInt16LE(offset + 1);
    if ((member.readUInt16LE(offset + 3) ^ 0xffff) !== length) return undefined;
    last = offset;
    offset += 5 + length;
    if (blockHeader === 1) break;
  }
  if (offset !== trailerStart || last < 0 || member[last] !== 1) return undefined;
  if (member.readUInt32LE(trailerStart + 4) !== block.byteLength % 2 ** 32) return undefined;
  member[last] = 0; // No longer the final block.
  return {
    deflate: member.subarray(headerLength, trailerStart),
    crc: member.readUInt32LE(trailerStart),
    length: block.byteLength,
  };
}

/** Compresses one block as raw deflate ending on a byte boundary (sync flush), never final. */
async function compressBlock(
  block: Uint8Array,
  dictionary: Uint8Array | undefined,
  level: number,
): Promise<CompressedBlock> {
  if (level === 0 || looksIncompressible(block)) {
    // Stored blocks: no CPU is worth spending on compression, and the copy and CRC-32 run on the pool.
    const stored = await storedBlocksOnThreadPool(block);
    if (stored) return stored;
    return { deflate: storedBlocks(block), crc: zlib.crc32(block) >>> 0, length: block.byteLength };
  }
  const crc = zlib.crc32(block) >>> 0;
  const options: zlib.ZlibOptions = {
    level,
    flush: zlib.constants.Z_SYNC_FLUSH,
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
    chunkSize: outputChunkSize(block),
  };
  if (dictionary) options.dictionary = dictionary;
  return { deflate: await runEngine(zlib.createDeflateRaw(options), block), crc, length: block.byteLength };
}

/** The CRC-32 polynomial, bit-reversed, as zlib uses it. */
const crcPolynomial = 0xedb88320;

/** `a` times `b` modulo the CRC polynomial (bit-reversed polynomials, as zlib's multmodp). */
function multiplyModulo(a: number, b: number): number {
  let m = 0x80000000;
  let product = 0;
  let multiplier = b >>> 0;
  for (;;) {
    if ((a & m) !== 0) {
      product ^= multiplier;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    multiplier = multiplier & 1 ? (multiplier >>> 1) ^ crcPolynomial : multiplier >>> 1;
  }
  return product >>> 0;
}

/** x^(2^k) modulo the CRC polynomial, for k = 0…31. */
const powersOfX = (() => {
  const table: number[] = [];
  let power = 0x40000000; // x^1
  table.push(power);
  for (let k = 1; k < 32; k += 1) {
    power = multiplyModulo(power, power);
    table.push(power);
  }
  return table;
})();

/**
 * The CRC-32 of two byte strings one after the other, from their CRC-32s and the second one's
 * length (zlib's crc32_combine).
 */
export function combineCrc32(first: number, second: number, secondLength: number): number {
  // x^(8 × secondLength): the first CRC shifted past the second string's bits.
  let shift = 0x80000000; // x^0
  let remaining = secondLength;
  for (let k = 3; remaining > 0; k += 1) {
    if (remaining % 2 === 1) shift = multiplyModulo(powersOfX[k % 32]!, shift);
    remaining = Math.floor(remaining / 2);
  }
  return (multiplyModulo(shift, first) ^ second) >>> 0;
}

/**
 * One block as a complete gzip member made by libdeflate off this thread: compressed at `level`, or
 * stored blocks (libdeflate's level 0: a copy and a CRC-32, ~0.15 ms per MiB) for data that does not
 * compress. Written into a buffer of `outputs` (lent out with the member) where it fits.
 */
function memberOfBlock(
  block: Uint8Array,
  level: number,
  engine: Libdeflate,
  outputs?: LentOutputBuffers,
): Promise<Buffer> {
  if (level === 0 || looksIncompressible(block)) return engine.gzipMember(block, 0, outputs);
  return engine.gzipMember(block, level, outputs);
}

/**
 * A pipeline stage that gzips its input using several threads, like pigz and Go's pgzip (which
 * skopeo uses). The input is cut into blocks of `blockSize` bytes that are compressed concurrently off
 * this thread and written out in order, so the output depends on the input and the options only:
 * - with libdeflate (`gzipImplementation()`), each block is a gzip member of its own (RFC 1952 allows
 *   a series of members; Go's compress/gzip, pgzip, zlib, `gzip` and Node.js read them as one stream,
 *   as they do eStargz layers). Blocks do not refer back to earlier ones (libdeflate has no preset
 *   dictionary), which costs ~0.5 % of size at 1 MiB blocks.
 * - with node:zlib, the blocks are raw deflate on the libuv thread pool, each with the previous block's
 *   last 32 KiB as its dictionary (so the ratio stays close to a single stream's) and ended by a sync
 *   flush, written as one gzip member with the CRC-32 and length of the whole input.
 * Blocks whose sampled slices mostly have near 8 bits of entropy per byte are stored as they are,
 * without spending CPU on them (already-compressed or random data). Memory is bounded by
 * `concurrency` blocks in flight, whatever the input's size.
 */
export function parallelGzipStage(
  options: ParallelGzipOptions = {},
): (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Uint8Array, void, undefined> {
  if (
    options.level !== undefined &&
    (!Number.isInteger(options.level) || options.level < 0 || options.level > 9)
  ) {
    throw new RangeError(`gzip compression level must be an integer from 0 to 9, got ${options.level}`);
  }
  const blockSize = options.blockSize ?? defaultGzipBlockSize;
  const concurrency = Math.max(1, options.concurrency ?? Math.max(2, availableParallelism()));
  const engine = libdeflate();
  if (engine) {
    return memberPerBlockStage(engine, options.level ?? defaultLibdeflateGzipLevel, blockSize, concurrency);
  }
  return syncFlushedStage(options.level ?? defaultGzipLevel, blockSize, concurrency);
}

/**
 * The bytes of `parts` as one view when they are consecutive ranges of one buffer (or a single part),
 * else undefined.
 */
export function contiguousView(parts: readonly Uint8Array[], length: number): Uint8Array | undefined {
  const first = parts[0];
  if (first === undefined) return undefined;
  if (parts.length === 1) return first;
  let end = first.byteOffset + first.byteLength;
  for (let index = 1; index < parts.length; index += 1) {
    const part = parts[index]!;
    if (part.buffer !== first.buffer || part.byteOffset !== end) return undefined;
    end += part.byteLength;
  }
  return new Uint8Array(first.buffer, first.byteOffset, length);
}

/**
 * Cuts `source` into blocks of `blockSize` bytes (the last one shorter), starts `start` on each with at
 * most `concurrency` unfinished, and yields their results in input order. `start` learns whether the
 * block is whole (`blockSize` bytes). A block that is one chunk, or consecutive parts of one buffer, is
 * a view of it. Otherwise, with `pooled`, a block made of several chunks is copied into a
 * pooled buffer that is reused once its job ended (so `start` must not keep views of the block past
 * its promise); else it is a fresh concatenation. With `pooled`, a chunk that is a whole buffer of
 * the pool of `blockSize` buffers (a decompressor's output made with `pooledOutput`) is given back to
 * that pool once its block's job ended: the chunks of `source` are this stage's alone once read. The
 * bytes of the other blocks are noted to `transientBuffers` once their job ended.
 */
export async function* inBlocks<T>(
  source: AsyncIterable<Uint8Array>,
  blockSize: number,
  concurrency: number,
  start: (block: Uint8Array, whole: boolean) => Promise<T>,
  pooled = false,
): AsyncGenerator<T, void, undefined> {
  const inFlight: Promise<T>[] = [];
  const blockPool = pooled ? bufferPoolOf(blockSize) : undefined;
  let pending: Uint8Array[] = [];
  let pendingLength = 0;
  const launch = (whole: boolean): void => {
    let block: Uint8Array;
    let giveBack: (() => void) | undefined;
    const contiguous = contiguousView(pending, pendingLength);
    if (contiguous) {
      // Chunks are not copied: a stream's chunks belong to its reader once passed on (Node streams'
      // rule), so views of them stay valid while the block is compressed. Consecutive views of one
      // buffer (a decompressor's output chunk handed over in parts) are one view.
      block = contiguous;
      const pooledChunk = whole ? blockPool?.wholeBufferOf(contiguous) : undefined;
      if (pooledChunk) giveBack = () => blockPool!.give(pooledChunk);
    } else if (pooled && whole) {
      const scratch = scratchBuffer(blockSize, true);
      let offset = 0;
      for (const part of pending) {
        scratch.buffer.set(part, offset);
        offset += part.byteLength;
      }
      block = scratch.buffer;
      giveBack = scratch.give;
    } else {
      block = Buffer.concat(pending, pendingLength);
    }
    pending = [];
    pendingLength = 0;
    const job = start(block, whole);
    if (giveBack) job.then(giveBack, giveBack);
    else {
      // A block that is no buffer of the pool is garbage once compressed (see GarbagePacer).
      const length = block.byteLength;
      const noteGarbage = () => transientBuffers.note(length);
      job.then(noteGarbage, noteGarbage);
    }
    job.catch(() => {}); // Awaited in order below; never left unhandled when the consumer stops.
    inFlight.push(job);
  };
  try {
    for await (const chunk of source) {
      let rest: Uint8Array = chunk;
      while (pendingLength + rest.byteLength >= blockSize) {
        const take = blockSize - pendingLength;
        pending.push(rest.subarray(0, take));
        pendingLength += take;
        rest = rest.subarray(take);
        launch(true);
        while (inFlight.length >= concurrency) yield await inFlight.shift()!;
      }
      if (rest.byteLength > 0) {
        pending.push(rest);
        pendingLength += rest.byteLength;
      }
    }
    if (pendingLength > 0) launch(false);
    while (inFlight.length > 0) yield await inFlight.shift()!;
  } finally {
    inFlight.length = 0;
  }
}

/** The libdeflate form of `parallelGzipStage`: one gzip member per block. */
function memberPerBlockStage(
  engine: Libdeflate,
  level: number,
  blockSize: number,
  concurrency: number,
): (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Uint8Array, void, undefined> {
  // Members are written into buffers lent out with them (`LentOutputBuffers`) and given back by the
  // destination once written (`releaseCompressedChunk`): the bound of a whole block at either level.
  const outputs = lentOutputBuffersOf(
    Math.max(engine.gzipBound(blockSize, level), engine.gzipBound(blockSize, 0)),
  );
  return async function* gzipMembersInParallel(source) {
    let members = 0;
    for await (const member of inBlocks(
      source,
      blockSize,
      concurrency,
      (block) => memberOfBlock(block, level, engine, outputs),
      true,
    )) {
      members += 1;
      // Garbage once sent on, unless the destination gives its buffer back (`releaseCompressedChunk`).
      transientBuffers.note(member.byteLength);
      yield member;
    }
    // Empty input: one empty member, as any gzip writer gives.
    if (members === 0) yield await memberOfBlock(new Uint8Array(0), level, engine);
  };
}

/** The node:zlib form of `parallelGzipStage`: sync-flushed raw deflate blocks in one gzip member. */
function syncFlushedStage(
  level: number,
  blockSize: number,
  concurrency: number,
): (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Uint8Array, void, undefined> {
  return async function* gzipInParallel(source) {
    yield gzipHeader;
    let crc = 0;
    let totalLength = 0;
    let dictionary: Uint8Array | undefined;
    const start = (block: Uint8Array): Promise<CompressedBlock> => {
      const job = compressBlock(block, dictionary, level);
      dictionary = block.byteLength >= windowSize ? block.subarray(block.byteLength - windowSize) : block;
      return job;
    };
    for await (const compressed of inBlocks(source, blockSize, concurrency, start)) {
      crc = combineCrc32(crc, compressed.crc, compressed.length);
      totalLength += compressed.length;
      transientBuffers.note(compressed.deflate.byteLength);
      yield compressed.deflate;
    }
    const trailer = Buffer.allocUnsafe(8);
    trailer.writeUInt32LE(crc >>> 0, 0);
    trailer.writeUInt32LE(totalLength % 2 ** 32, 4);
    yield Buffer.concat([finalEmptyBlock, trailer]);
  };
}
