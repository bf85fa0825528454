/**
 * zstd:chunked, as containers/storage's chunked compressor (`pkg/chunked/compressor`) writes it: a layer
 * tar compressed as a sequence of zstd frames that any zstd reader decompresses as one stream, plus an
 * index that lets podman fetch only the files it lacks (a "partial pull"):
 *
 *   [frame: tar headers up to a file's content][frame: chunk 1 of the content][frame: chunk 2]…
 *   [frame: next headers]…[frame: end-of-archive blocks and trailing bytes]
 *   [skippable frame: the TOC, JSON, zstd-compressed]
 *   [skippable frame: the tar-split, JSON lines, zstd-compressed]
 *   [skippable frame: the 64-byte footer]
 *
 * A file's content is cut into chunks where a rolling checksum (bup's rollsum, 16 bits) says so, and
 * around runs of at least 1 KiB of zeros (chunks of type "zeros"), exactly where containers/storage cuts
 * them, so that the same files give the same chunks. The TOC lists every entry with its metadata, the
 * sha256 of its content and the offsets of its frames; the tar-split lets the reader rebuild the tar
 * byte for byte. The layer descriptor carries three annotations (`zstdChunkedAnnotationKeys`): the
 * TOC's digest and position and the tar-split's position.
 *
 * Frames are compressed through zstd-napi's streaming context (one frame ends where a chunk ends).
 */
import { createHash, type Hash } from 'node:crypto';
import { createRequire } from 'node:module';
import { ErrorCodes, GantryError } from '../errors.js';
import { Crc64 } from '../tar/crc64.js';
import type { TarHeader } from '../tar/tar-reader.js';
import { TarStreamReader } from '../tar/tar-reader.js';
import { goJsonString, TarSplitLines } from '../tar/tar-split-lines.js';

/** The layer annotations of a zstd:chunked layer (containers/storage's `pkg/chunked/internal/minimal`). */
export const zstdChunkedAnnotationKeys = {
  /** `sha256:<hex>` of the compressed TOC. */
  manifestChecksum: 'io.github.containers.zstd-chunked.manifest-checksum',
  /** `<offset>:<compressed length>:<uncompressed length>:1` of the TOC (1: the CRFS-like TOC type). */
  manifestPosition: 'io.github.containers.zstd-chunked.manifest-position',
  /** `<offset>:<compressed length>:<uncompressed length>` of the tar-split. */
  tarSplitPosition: 'io.github.containers.zstd-chunked.tarsplit-position',
} as const;

/** Whether layer annotations describe a zstd:chunked layer (a TOC this format's readers can use). */
export function hasZstdChunkedAnnotations(
  annotations: Readonly<Record<string, string>> | undefined,
): boolean {
  return (
    annotations?.[zstdChunkedAnnotationKeys.manifestChecksum] !== undefined &&
    annotations[zstdChunkedAnnotationKeys.manifestPosition] !== undefined &&
    annotations[zstdChunkedAnnotationKeys.tarSplitPosition] !== undefined
  );
}

/**
 * Annotations describing zstd:chunked contents, of this format or of its first version
 * (`io.containers.zstd-chunked.*`): they describe those exact bytes, so a layer whose bytes change
 * loses them.
 */
export function isZstdChunkedAnnotation(key: string): boolean {
  return (
    key.startsWith('io.github.containers.zstd-chunked.') || key.startsWith('io.containers.zstd-chunked.')
  );
}

/** Runs of zeros at least this long become chunks of type "zeros" (containers/storage's holesThreshold). */
const holeThreshold = 1024;
/** A chunk ends after a byte where the rolling checksum's low 16 bits are all set (RollsumBits). */
const splitMask = 0xffff;
const rollWindow = 64;
const rollCharOffset = 31;
/** TOC type "CRFS" in the position annotation and footer. */
const tocTypeCrfs = 1;
const skippableFrameMagic = Buffer.from([0x50, 0x2a, 0x4d, 0x18]);
/** The footer's last 8 bytes. */
const footerMagic = Buffer.from([0x47, 0x4e, 0x55, 0x6c, 0x49, 0x6e, 0x55, 0x78]);
const footerSize = 64;
const zeros = Buffer.alloc(64 * 1024);

interface ZstdBinding {
  CCtx: new () => {
    setParameter(parameter: number, value: number): void;
    compressStream2(output: Uint8Array, input: Uint8Array, endOp: number): [number, number, number];
  };
  CParameter: { compressionLevel: number };
  EndDirective: { continue: number; end: number };
  cStreamOutSize(): number;
}

let binding: ZstdBinding | null | undefined;

function loadBinding(): ZstdBinding | null {
  if (binding === undefined) {
    try {
      binding = createRequire(import.meta.url)('zstd-napi/binding') as ZstdBinding;
    } catch {
      binding = null;
    }
  }
  return binding;
}

/** Whether this process can write zstd:chunked (it needs the zstd-napi package). */
export function zstdChunkedAvailable(): boolean {
  return process.env.GANTRY_ZSTD_IMPLEMENTATION !== 'none' && loadBinding() !== null;
}

/**
 * A zstd stream that is written to in pieces and ended frame by frame; it counts the compressed bytes
 * it produced (the offset of the next frame) and collects them until taken.
 */
class FrameCompressor {
  private readonly context: InstanceType<ZstdBinding['CCtx']>;
  private readonly scratch: Buffer;
  private readonly directives: ZstdBinding['EndDirective'];
  private output: Buffer[] = [];
  private outputLength = 0;
  /** Compressed bytes produced so far. */
  offset = 0;
  /** Whether the open frame has any input. */
  private frameHasInput = false;

  constructor(zstd: ZstdBinding, level: number) {
    this.context = new zstd.CCtx();
    this.context.setParameter(zstd.CParameter.compressionLevel, level);
    this.scratch = Buffer.allocUnsafe(zstd.cStreamOutSize());
    this.directives = zstd.EndDirective;
  }

  private run(input: Uint8Array, directive: number): void {
    let rest = input;
    for (;;) {
      const [remaining, produced, consumed] = this.context.compressStream2(this.scratch, rest, directive);
      if (produced > 0) {
        this.output.push(Buffer.from(this.scratch.subarray(0, produced)));
        this.outputLength += produced;
        this.offset += produced;
      }
      rest = rest.subarray(consumed);
      const done = directive === this.directives.continue ? rest.length === 0 : remaining === 0;
      if (done) return;
    }
  }

  write(data: Uint8Array): void {
    if (data.length === 0) return;
    this.frameHasInput = true;
    this.run(data, this.directives.continue);
  }

  /** Ends the open frame; nothing is written for a frame without input. */
  endFrame(): void {
    if (!this.frameHasInput) return;
    this.run(Buffer.alloc(0), this.directives.end);
    this.frameHasInput = false;
  }

  /** Bytes buffered since the last `take()`. */
  get pendingLength(): number {
    return this.outputLength;
  }

  /** The compressed bytes produced since the last call. */
  take(): Buffer[] {
    const taken = this.output;
    this.output = [];
    this.outputLength = 0;
    return taken;
  }

  /** All bytes written, as one frame. */
  static compressWhole(zstd: ZstdBinding, level: number, data: Uint8Array): Buffer {
    const compressor = new FrameCompressor(zstd, level);
    compressor.write(data);
    compressor.endFrame();
    return Buffer.concat(compressor.take());
  }
}

/** bup's rolling checksum as containers/storage keeps it (32-bit sums, a 64-byte window). */
class RollingSum {
  private s1 = rollWindow * rollCharOffset;
  private s2 = rollWindow * (rollWindow - 1) * rollCharOffset;
  private readonly window = new Uint8Array(rollWindow);
  private position = 0;
  /** Consecutive zero bytes rolled last (the window is all zeros once this reaches its size). */
  private trailingZeros = 0;

  /** Rolls one byte in; true when a chunk ends after it. */
  roll(byte: number): boolean {
    const drop = this.window[this.position]!;
    this.window[this.position] = byte;
    this.position = (this.position + 1) & (rollWindow - 1);
    this.s1 = (this.s1 + byte - drop) | 0;
    this.s2 = (this.s2 + this.s1 - rollWindow * (drop + rollCharOffset)) | 0;
    this.trailingZeros = byte === 0 ? this.trailingZeros + 1 : 0;
    return (this.s2 & splitMask) === splitMask;
  }

  /** Rolls `count` zero bytes in (a hole: no chunk ends inside it). */
  rollZeros(count: number): void {
    let left = count;
    while (left > 0 && this.trailingZeros < rollWindow) {
      this.roll(0);
      left--;
    }
    if (left === 0) return;
    // With a window of zeros, each further zero adds s1 - 64·31 to s2 and changes nothing else.
    this.s2 = (this.s2 + Math.imul(left, (this.s1 - rollWindow * rollCharOffset) | 0)) | 0;
    this.trailingZeros += left;
  }
}

/** A chunk of one file's content, as the TOC records it. */
interface Chunk {
  /** Offset in the file's content. */
  chunkOffset: number;
  /** Offset in the compressed layer of the chunk's first frame. */
  offset: number;
  size: number;
  digest: string;
  type: '' | 'zeros';
}

/**
 * Compresses one file's content into frames, chunk by chunk, hashing the whole content (sha256 for the
 * TOC, CRC-64 for the tar-split) and each chunk (sha256).
 */
class FileChunker {
  private readonly rolling = new RollingSum();
  private readonly contentHash = createHash('sha256');
  readonly crc = new Crc64();
  private chunkHash: Hash = createHash('sha256');
  /** Content bytes written. */
  private written = 0;
  private chunkStart = 0;
  private chunkFrameOffset = 0;
  /** Zeros seen but not yet written: whether they are data or a hole depends on how many follow. */
  private pendingZeros = 0;
  /** Offset of the content's first frame; -1 until content is written. */
  startOffset = -1;
  readonly chunks: Chunk[] = [];

  constructor(private readonly frames: FrameCompressor) {}

  /** Writes content bytes to the open chunk. */
  private emit(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.startOffset < 0) {
      // The headers before the content end their frame; the content starts a new one.
      this.frames.endFrame();
      this.startOffset = this.frames.offset;
      this.chunkFrameOffset = this.startOffset;
    }
    this.contentHash.update(bytes);
    this.chunkHash.update(bytes);
    this.crc.update(bytes);
    this.frames.write(bytes);
    this.written += bytes.length;
  }

  private emitZeros(count: number): void {
    let left = count;
    while (left > 0) {
      const piece = Math.min(left, zeros.length);
      this.emit(zeros.subarray(0, piece));
      left -= piece;
    }
  }

  /** Ends the open chunk (and its frame), recording it when it has bytes. */
  private endChunk(type: Chunk['type']): void {
    if (this.startOffset < 0) return;
    this.frames.endFrame();
    const size = this.written - this.chunkStart;
    if (size > 0) {
      this.chunks.push({
        chunkOffset: this.chunkStart,
        offset: this.chunkFrameOffset,
        size,
        digest: `sha256:${this.chunkHash.digest('hex')}`,
        type,
      });
      this.chunkHash = createHash('sha256');
    }
    this.chunkFrameOffset = this.frames.offset;
    this.chunkStart = this.written;
  }

  /** Settles the pending zeros: a hole when there are enough, else data bytes rolled one by one. */
  private settleZeros(): void {
    const count = this.pendingZeros;
    if (count === 0) return;
    this.pendingZeros = 0;
    if (count >= holeThreshold) {
      this.endChunk('');
      this.rolling.rollZeros(count);
      this.emitZeros(count);
      this.endChunk('zeros');
      return;
    }
    let unwritten = 0;
    for (let index = 0; index < count; index++) {
      unwritten++;
      if (this.rolling.roll(0)) {
        this.emitZeros(unwritten);
        unwritten = 0;
        this.endChunk('');
      }
    }
    this.emitZeros(unwritten);
  }

  /** A run of zeros from `start` to `end` of `data` that is a hole: its own chunk of type "zeros". */
  private hole(data: Uint8Array, start: number, end: number): void {
    this.endChunk('');
    this.rolling.rollZeros(end - start);
    this.emit(data.subarray(start, end));
    this.endChunk('zeros');
  }

  update(data: Uint8Array): void {
    const length = data.length;
    let index = 0;
    if (this.pendingZeros > 0) {
      // Zeros carried over from the previous piece: how long the run is decides what they are.
      while (index < length && data[index] === 0) index++;
      if (index === length) {
        this.pendingZeros += length;
        return;
      }
      // settleZeros writes the whole run, this piece's leading zeros included.
      this.pendingZeros += index;
      this.settleZeros();
    }
    let dataStart = index;
    while (index < length) {
      const byte = data[index]!;
      if (byte !== 0) {
        index++;
        if (this.rolling.roll(byte)) {
          this.emit(data.subarray(dataStart, index));
          dataStart = index;
          this.endChunk('');
        }
        continue;
      }
      let end = index;
      while (end < length && data[end] === 0) end++;
      if (end === length) {
        // The run may go on in the next piece: withheld until its length is known.
        this.emit(data.subarray(dataStart, index));
        this.pendingZeros = end - index;
        return;
      }
      if (end - index >= holeThreshold) {
        this.emit(data.subarray(dataStart, index));
        this.hole(data, index, end);
        index = end;
        dataStart = end;
        continue;
      }
      // A short run of zeros is data: rolled byte by byte, a chunk may end inside it.
      for (; index < end; index++) {
        if (this.rolling.roll(0)) {
          this.emit(data.subarray(dataStart, index + 1));
          dataStart = index + 1;
          this.endChunk('');
        }
      }
    }
    this.emit(data.subarray(dataStart, length));
  }

  /** Ends the content; the sha256 of the whole content ('' when there was none). */
  finish(): string {
    this.settleZeros();
    this.endChunk('');
    return this.startOffset < 0 ? '' : `sha256:${this.contentHash.digest('hex')}`;
  }
}

const tocTypes: Partial<Record<TarHeader['type'], string>> = {
  file: 'reg',
  hardlink: 'hardlink',
  symlink: 'symlink',
  'character-device': 'char',
  'block-device': 'block',
  directory: 'dir',
  fifo: 'fifo',
};

/** A time as Go's encoding/json writes a time.Time in UTC (RFC 3339, fraction without trailing zeros). */
function goJsonTime(seconds: number, nanoseconds: number, name: string): string {
  const date = new Date(seconds * 1000);
  const year = date.getUTCFullYear();
  if (!Number.isFinite(year) || year < 0 || year > 9999) {
    throw new GantryError(
      ErrorCodes.InvalidLayer,
      `layer tar: entry "${name}" has a time outside years 0-9999, which a zstd:chunked TOC cannot record`,
    );
  }
  const pad = (value: number, width = 2) => String(value).padStart(width, '0');
  let text = `${pad(year, 4)}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}T${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}`;
  if (nanoseconds > 0) text += `.${String(nanoseconds).padStart(9, '0').replace(/0+$/, '')}`;
  return `"${text}Z"`;
}

/** The mode field of the entry's own header block, as Go's archive/tar reports it (file-type bits kept). */
function rawMode(raw: Buffer, fallback: number): number {
  if (raw.length < 512) return fallback;
  const field = raw.subarray(raw.length - 512 + 100, raw.length - 512 + 108);
  if ((field[0]! & 0x80) !== 0) return fallback;
  const text = field
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .replace(/^[\0 ]+/, '');
  const nul = text.indexOf('\0');
  const digits = nul === -1 ? text : text.slice(0, nul);
  return /^[0-7]+$/.test(digits) ? Number.parseInt(digits, 8) : fallback;
}

/** The change time Go's archive/tar reports: PAX `ctime`, else a GNU header's ctime field. */
function changeTime(header: TarHeader, raw: Buffer): { seconds: number; nanoseconds: number } | undefined {
  const pax = header.paxRecords.get('ctime');
  if (pax !== undefined) {
    const match = /^(-?)([0-9]+)(?:\.([0-9]*))?$/.exec(pax.toString('latin1'));
    if (!match) return undefined;
    const seconds = Number(match[2]) * (match[1] === '-' ? -1 : 1);
    const nanoseconds = Number((match[3] ?? '').padEnd(9, '0').slice(0, 9));
    return { seconds, nanoseconds };
  }
  if (raw.length < 512) return undefined;
  const block = raw.subarray(raw.length - 512);
  const gnu = block.toString('latin1', 257, 263) === 'ustar ' && block.toString('latin1', 263, 265) === ' \0';
  if (!gnu || block[357] === 0) return undefined;
  const digits = block
    .toString('latin1', 357, 369)
    .replace(/[\0 ]+$/, '')
    .replace(/^[\0 ]+/, '');
  return /^[0-7]+$/.test(digits) ? { seconds: Number.parseInt(digits, 8), nanoseconds: 0 } : undefined;
}

/** The TOC entries (JSON, field order and omissions as Go's encoding/json) of one tar entry. */
function tocEntries(
  header: TarHeader,
  raw: Buffer,
  digest: string,
  startOffset: number,
  endOffset: number,
  chunks: Chunk[],
): string[] {
  const type = tocTypes[header.type];
  if (type === undefined) {
    throw new GantryError(
      ErrorCodes.InvalidLayer,
      `layer tar: entry "${header.name}" has type "${header.typeFlag}", which zstd:chunked cannot describe`,
    );
  }
  const mode = rawMode(raw, header.mode);
  const fields: string[] = [`"type":"${type}"`, `"name":${goJsonString(header.name)}`];
  if (header.linkName !== '') fields.push(`"linkName":${goJsonString(header.linkName)}`);
  if (mode !== 0) fields.push(`"mode":${mode}`);
  if (header.size !== 0) fields.push(`"size":${header.size}`);
  if (header.uid !== 0) fields.push(`"uid":${header.uid}`);
  if (header.gid !== 0) fields.push(`"gid":${header.gid}`);
  fields.push(`"modtime":${goJsonTime(header.mtimeSeconds, header.mtimeNanoseconds, header.name)}`);
  if (header.atimeSeconds !== undefined) {
    fields.push(`"accesstime":${goJsonTime(header.atimeSeconds, header.atimeNanoseconds, header.name)}`);
  }
  const ctime = changeTime(header, raw);
  if (ctime !== undefined)
    fields.push(`"changetime":${goJsonTime(ctime.seconds, ctime.nanoseconds, header.name)}`);
  if (header.devMajor !== 0) fields.push(`"devMajor":${header.devMajor}`);
  if (header.devMinor !== 0) fields.push(`"devMinor":${header.devMinor}`);
  if (header.xattrs.size > 0) {
    const names = [...header.xattrs.keys()].sort((left, right) =>
      Buffer.compare(Buffer.from(left), Buffer.from(right)),
    );
    const members = names.map(
      (name) => `${goJsonString(name)}:"${header.xattrs.get(name)!.toString('base64')}"`,
    );
    fields.push(`"xattrs":{${members.join(',')}}`);
  }
  if (digest !== '') fields.push(`"digest":"${digest}"`);
  const chunkFields = (chunk: Chunk): string[] => {
    const result: string[] = [];
    if (chunk.size !== 0) result.push(`"chunkSize":${chunk.size}`);
    if (chunk.chunkOffset !== 0) result.push(`"chunkOffset":${chunk.chunkOffset}`);
    result.push(`"chunkDigest":"${chunk.digest}"`);
    if (chunk.type !== '') result.push(`"chunkType":"${chunk.type}"`);
    return result;
  };
  const split = chunks.length > 1;
  const offset = split ? chunks[0]!.offset : startOffset;
  if (offset > 0) fields.push(`"offset":${offset}`);
  if (endOffset > 0) fields.push(`"endOffset":${endOffset}`);
  if (split) fields.push(...chunkFields(chunks[0]!));
  const entries = [`{${fields.join(',')}}`];
  if (split) {
    for (const chunk of chunks.slice(1)) {
      const chunkEntry = [`"type":"chunk"`, `"name":${goJsonString(header.name)}`];
      if (chunk.offset > 0) chunkEntry.push(`"offset":${chunk.offset}`);
      chunkEntry.push(...chunkFields(chunk));
      entries.push(`{${chunkEntry.join(',')}}`);
    }
  }
  return entries;
}

function skippableFrame(data: Uint8Array): Buffer[] {
  const size = Buffer.alloc(4);
  size.writeUInt32LE(data.length);
  return [skippableFrameMagic, size, Buffer.from(data.buffer, data.byteOffset, data.byteLength)];
}

/** Compressed bytes handed on once this many are buffered (besides at each entry's end). */
const yieldThreshold = 1024 * 1024;

/**
 * A pipeline stage compressing a layer tar to zstd:chunked; `onAnnotations` receives the layer
 * annotations once the whole layer is written. Needs zstd-napi (`ERR_GANTRY_NOT_SUPPORTED` without);
 * input that is not a tar, or holds entries zstd:chunked cannot describe, fails with
 * `ERR_GANTRY_INVALID_LAYER`.
 */
export function zstdChunkedStage(
  level: number,
  onAnnotations: (annotations: Record<string, string>) => void,
): (source: AsyncIterable<Uint8Array>) => AsyncGenerator<Uint8Array, void, undefined> {
  return async function* compressChunked(source) {
    const zstd = loadBinding();
    if (zstd === null || process.env.GANTRY_ZSTD_IMPLEMENTATION === 'none') {
      throw new GantryError(
        ErrorCodes.NotSupported,
        'writing zstd:chunked needs the zstd-napi package (its native binding built: allow its build script, e.g. pnpm onlyBuiltDependencies)',
      );
    }
    const frames = new FrameCompressor(zstd, level);
    const tarSplitFrames = new FrameCompressor(zstd, level);
    const tarSplitDigest = createHash('sha256');
    let tarSplitLength = 0;
    const tarSplitCompressed: Buffer[] = [];
    const lines = new TarSplitLines();
    const addLine = (line: string | undefined): void => {
      if (line === undefined) return;
      const bytes = Buffer.from(line, 'utf8');
      tarSplitLength += bytes.length;
      tarSplitFrames.write(bytes);
      for (const piece of tarSplitFrames.take()) {
        tarSplitDigest.update(piece);
        tarSplitCompressed.push(piece);
      }
    };
    const toc: string[] = [];
    const reader = new TarStreamReader(source);
    let finished = false;
    try {
      for (;;) {
        const entry = await reader.next();
        if (entry === undefined) break;
        frames.write(entry.raw);
        addLine(lines.segment(entry.raw));
        const chunker = new FileChunker(frames);
        for (;;) {
          const data = await reader.readData();
          if (data === undefined) break;
          chunker.update(data);
          if (frames.pendingLength >= yieldThreshold) yield* frames.take();
        }
        const digest = chunker.finish();
        const endOffset = chunker.startOffset < 0 ? 0 : frames.offset;
        const size = entry.header.size;
        addLine(lines.file(entry.header.nameBytes, size, size > 0 ? chunker.crc.digest() : null));
        toc.push(
          ...tocEntries(
            entry.header,
            entry.raw,
            digest,
            Math.max(0, chunker.startOffset),
            endOffset,
            chunker.chunks,
          ),
        );
        yield* frames.take();
      }
      frames.write(reader.end);
      addLine(lines.segment(reader.end));
      for await (const trailing of reader.trailing()) {
        frames.write(trailing);
        addLine(lines.segment(trailing));
      }
      frames.endFrame();
      yield* frames.take();
      tarSplitFrames.endFrame();
      for (const piece of tarSplitFrames.take()) {
        tarSplitDigest.update(piece);
        tarSplitCompressed.push(piece);
      }
      const tarSplit = Buffer.concat(tarSplitCompressed);
      const tocJson = Buffer.from(
        `{"version":1,"entries":[${toc.join(',')}],"tarSplitDigest":"sha256:${tarSplitDigest.digest('hex')}"}`,
        'utf8',
      );
      const tocCompressed = FrameCompressor.compressWhole(zstd, level, tocJson);
      const tocOffset = frames.offset + 8;
      const tarSplitOffset = tocOffset + tocCompressed.length + 8;
      const footer = Buffer.alloc(footerSize);
      footer.writeBigUInt64LE(BigInt(tocOffset), 0);
      footer.writeBigUInt64LE(BigInt(tocCompressed.length), 8);
      footer.writeBigUInt64LE(BigInt(tocJson.length), 16);
      footer.writeBigUInt64LE(BigInt(tocTypeCrfs), 24);
      footer.writeBigUInt64LE(BigInt(tarSplitOffset), 32);
      footer.writeBigUInt64LE(BigInt(tarSplit.length), 40);
      footer.writeBigUInt64LE(BigInt(tarSplitLength), 48);
      footerMagic.copy(footer, 56);
      yield* skippableFrame(tocCompressed);
      yield* skippableFrame(tarSplit);
      yield* skippableFrame(footer);
      finished = true;
      onAnnotations({
        [zstdChunkedAnnotationKeys.manifestChecksum]: `sha256:${createHash('sha256').update(tocCompressed).digest('hex')}`,
        [zstdChunkedAnnotationKeys.manifestPosition]: `${tocOffset}:${tocCompressed.length}:${tocJson.length}:${tocTypeCrfs}`,
        [zstdChunkedAnnotationKeys.tarSplitPosition]: `${tarSplitOffset}:${tarSplit.length}:${tarSplitLength}`,
      });
    } finally {
      if (!finished) reader.close();
    }
  };
}
