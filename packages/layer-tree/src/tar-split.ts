/**
 * tar-split, as vbatts/tar-split's `tar/storage` JSON-lines format and as containers/storage stores it in
 * `<layer-id>.tar-split.gz`: one JSON object per line, in tar order,
 *
 *   `{"type":2,"payload":"<base64 raw bytes>","position":N}`  a segment: headers and padding, verbatim
 *   `{"type":1,"name":"etc/hosts","size":12,"payload":"<base64 CRC-64/ISO, 8 bytes>","position":N}`  a file
 *
 * with `name_raw` (base64 bytes) instead of `name` when the name is not valid UTF-8, `size` left out when 0,
 * `payload` null for files without content, and positions counting from 0. Lines are written as Go's
 * encoding/json (Go 1.19, which Debian's podman 4.3 / containers/storage are built with) writes them, so the
 * decompressed JSON lines equal containers/storage's for the same layer tar.
 *
 * Reassembly (`assembleTar`) reads the entries back and, with a function that opens each file's content,
 * regenerates the tar byte for byte, checking every file's size and CRC-64.
 */
import { Readable } from 'node:stream';
import { createGunzip, createGzip, type ZlibOptions, constants as zlibConstants } from 'node:zlib';
import { cleanPath, ErrorCodes, GantryError, goJsonString, type TarSplitStyle } from '@gantry/core/transport';
import { Crc64 } from './crc64.js';

export { cleanPath, goJsonString, type TarSplitStyle } from '@gantry/core/transport';

export type TarSplitEntry =
  | { type: 'segment'; payload: Buffer; position: number }
  | { type: 'file'; name: string; nameBytes: Buffer; size: number; crc64: Buffer | null; position: number };

/** The style of Debian's podman 4.3 and skopeo 1.9 (containers/storage 1.43 with tar-split 0.11.2). */
export const defaultTarSplitStyle: TarSplitStyle = 'tar-split-0.11.2';

const segmentPrefix = Buffer.from('{"type":2,"payload":"', 'latin1');
const segmentMiddle = Buffer.from('","position":', 'latin1');
const fileChunkSize = 256 * 1024;
/** Buffers kept for reuse: as many as the compressor may hold (`needsDrain` past 2 MiB), and a few more. */
const maxSpareBuffers = 12;

/**
 * `cleanPath(path)` (Go's path.Clean), with the common case answered without splitting: a relative name
 * with no empty, `.` or `..` component and no trailing slash is already clean.
 */
export function cleanName(path: string): string {
  const last = path.length - 1;
  if (
    last < 0 ||
    path.charCodeAt(0) === 47 || // '/'
    path.charCodeAt(last) === 47 ||
    path.charCodeAt(0) === 46 || // '.': '.', '..', './x', '../x' (and '.x', left to cleanPath)
    path.includes('//') ||
    path.includes('/.')
  ) {
    return cleanPath(path);
  }
  return path;
}

/** True when every byte is ASCII (then the bytes are valid UTF-8 and their Latin-1 string is the name). */
function isAscii(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if ((bytes[i] as number) > 0x7f) return false;
  return true;
}

/**
 * Writes tar-split entries as gzip-compressed JSON lines, refusing a file name seen before (as
 * tar-split's packer does: containers/storage cannot store such a layer).
 *
 * The lines are the ones `TarSplitLines` (core) formats, written here straight into 256 KiB buffers that
 * go to the compressor (which runs on libuv's thread pool): a layer of 20,000 small files has ~30 MB of
 * tar-split JSON, mostly the base64 of its headers, and building whole lines as strings (concatenation,
 * joining, UTF-8 encoding) cost more of the main thread than parsing the tar. A header's base64 comes
 * from Node's encoder and is copied in as Latin-1 (ASCII), the rest of the line around it as bytes.
 */
export class TarSplitWriter {
  // Up to 2 MiB of lines wait for the compressor before `needsDrain` asks the caller to wait.
  private readonly gzip = createGzip({
    level: 1,
    chunkSize: 64 * 1024,
    // A stream option zlib passes on to its Transform (not in ZlibOptions' type).
    writableHighWaterMark: 2 << 20,
  } as ZlibOptions);
  private readonly output: Buffer[] = [];
  private readonly seen = new Set<string>();
  private position = 0;
  private buffer: Buffer = Buffer.allocUnsafe(fileChunkSize);
  private used = 0;
  private failure: Error | undefined;
  /**
   * Buffers the compressor has read, ready to be filled again: a layer of many small files has tens of
   * MB of lines, and a new buffer for each 256 KiB costs a page fault per 4 KiB touched (and garbage to
   * collect) — more than encoding the lines.
   */
  private readonly spare: Buffer[] = [];

  constructor() {
    this.gzip.on('data', (chunk: Buffer) => this.output.push(chunk));
    this.gzip.on('error', (error) => {
      this.failure = error;
    });
  }

  /** Makes room for `length` more bytes, handing the filled part to the compressor. */
  private reserve(length: number): void {
    if (this.used + length <= this.buffer.length) return;
    this.flush();
    if (length > this.buffer.length) this.buffer = Buffer.allocUnsafe(length);
  }

  private flush(): void {
    if (this.used === 0) return;
    // The compressor keeps the buffer until it has read it (the write's callback): the next lines go to
    // another one, and this one is filled again once the compressor is done with it.
    const full = this.buffer;
    this.gzip.write(full.subarray(0, this.used), () => {
      if (full.length === fileChunkSize && this.spare.length < maxSpareBuffers) this.spare.push(full);
    });
    this.buffer = this.spare.pop() ?? Buffer.allocUnsafe(fileChunkSize);
    this.used = 0;
  }

  /**
   * True when the compressor is behind (more than 2 MiB of lines waiting): the caller should await
   * `drained()` before adding more, so that memory stays bounded when the thread pool is slower than the
   * tar reading.
   */
  get needsDrain(): boolean {
    return this.gzip.writableNeedDrain;
  }

  /** Resolves once the compressor has caught up (or failed: the failure is thrown by `finish`). */
  async drained(): Promise<void> {
    if (!this.gzip.writableNeedDrain || this.failure !== undefined) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.gzip.off('drain', done);
        this.gzip.off('error', done);
        this.gzip.off('close', done);
        resolve();
      };
      this.gzip.on('drain', done);
      this.gzip.on('error', done);
      this.gzip.on('close', done);
    });
  }

  /** `<position>}\n` */
  private endLine(): void {
    this.used += this.buffer.write(`${this.position++}}\n`, this.used, 'latin1');
  }

  /**
   * Raw bytes of the tar (headers, padding). Empty segments are left out unless `keepEmpty` is set (the
   * end marker of the tar-split 0.11.2 format, see `finishTrailer`).
   */
  addSegment(payload: Uint8Array, keepEmpty = false): void {
    if (payload.length === 0 && !keepEmpty) return;
    this.reserve(segmentPrefix.length + Math.ceil(payload.length / 3) * 4 + segmentMiddle.length + 24);
    const buffer = this.buffer;
    buffer.set(segmentPrefix, this.used);
    this.used += segmentPrefix.length;
    // Node's base64 encoder, then the (ASCII) text copied in: faster than a JavaScript loop writing
    // straight into the buffer, even counting the string left for the garbage collector.
    const bytes = Buffer.isBuffer(payload)
      ? payload
      : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    this.used += buffer.write(bytes.toString('base64'), this.used, 'latin1');
    buffer.set(segmentMiddle, this.used);
    this.used += segmentMiddle.length;
    this.endLine();
  }

  /**
   * A file entry: the exact name bytes from the tar, the size from its header, and the CRC-64 of its
   * content (null when the size is 0). `latin1Name`, when given, is `nameBytes.toString('latin1')`,
   * already decoded by the caller.
   */
  addFile(nameBytes: Buffer, size: number, crc64: Buffer | null, latin1Name?: string): void {
    const latin1 = latin1Name ?? nameBytes.toString('latin1');
    const clean = cleanName(latin1);
    if (this.seen.has(clean)) {
      throw new GantryError(
        ErrorCodes.InvalidLayer,
        `layer tar: entry "${nameBytes.toString('utf8')}" appears twice (containers/storage refuses duplicate paths)`,
      );
    }
    this.seen.add(clean);
    const name = isAscii(nameBytes) ? latin1 : validUtf8(nameBytes);
    let text = '{"type":1';
    if (name !== undefined) {
      if (name !== '') text += `,"name":${goJsonString(name)}`;
    } else {
      text += `,"name_raw":"${nameBytes.toString('base64')}"`;
    }
    if (size !== 0) text += `,"size":${size}`;
    text += crc64 === null ? ',"payload":null' : `,"payload":"${crc64.toString('base64')}"`;
    text += `,"position":${this.position++}}\n`;
    this.reserve(text.length * 3);
    this.used += this.buffer.write(text, this.used, 'utf8');
  }

  /**
   * Ends the entries after the bytes that follow the tar's end blocks. `tar-split-0.11.2` (what Debian's
   * podman 4.3 / containers/storage 1.43 write, the default) closes with one empty segment, the last
   * read that found the end of the stream; `tar-split-0.11.4` (containers/storage since mid-2023) does
   * not. containers/storage reads both.
   */
  finishTrailer(style: TarSplitStyle = defaultTarSplitStyle): void {
    if (style === 'tar-split-0.11.2') this.addSegment(Buffer.alloc(0), true);
  }

  /** The gzip-compressed tar-split. */
  async finish(): Promise<Buffer> {
    this.flush();
    await new Promise<void>((resolve, reject) => {
      this.gzip.once('end', resolve);
      this.gzip.once('error', reject);
      this.gzip.end();
    });
    if (this.failure) throw this.failure;
    return Buffer.concat(this.output);
  }

  /** Releases the compressor after a failure. */
  destroy(): void {
    this.gzip.destroy();
  }
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

function validUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    return undefined;
  }
}

function invalidTarSplit(message: string): GantryError {
  return new GantryError(ErrorCodes.InvalidLayer, `tar-split: ${message}`);
}

function base64Field(value: unknown, field: string, line: number): Buffer | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value))
    throw invalidTarSplit(`line ${line}: ${field} is not base64`);
  return Buffer.from(value, 'base64');
}

function parseEntry(text: string, lineNumber: number): TarSplitEntry {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw invalidTarSplit(`line ${lineNumber} is not JSON: ${(error as Error).message}`);
  }
  if (typeof value !== 'object' || value === null)
    throw invalidTarSplit(`line ${lineNumber} is not an object`);
  const entry = value as Record<string, unknown>;
  const position = entry.position ?? 0;
  if (typeof position !== 'number') throw invalidTarSplit(`line ${lineNumber}: position is not a number`);
  const payload = base64Field(entry.payload, 'payload', lineNumber);
  if (entry.type === 2) return { type: 'segment', payload: payload ?? Buffer.alloc(0), position };
  if (entry.type === 1) {
    const size = entry.size ?? 0;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
      throw invalidTarSplit(`line ${lineNumber}: bad size`);
    const raw = base64Field(entry.name_raw, 'name_raw', lineNumber);
    let nameBytes: Buffer;
    if (raw !== null && raw.length > 0) nameBytes = raw;
    else if (typeof entry.name === 'string') nameBytes = Buffer.from(entry.name, 'utf8');
    else if (entry.name === undefined) nameBytes = Buffer.alloc(0);
    else throw invalidTarSplit(`line ${lineNumber}: name is not a string`);
    return { type: 'file', name: nameBytes.toString('utf8'), nameBytes, size, crc64: payload, position };
  }
  throw invalidTarSplit(`line ${lineNumber}: unknown entry type ${JSON.stringify(entry.type)}`);
}

function toIterable(input: Uint8Array | AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  if (input instanceof Uint8Array)
    return Readable.from([Buffer.from(input.buffer, input.byteOffset, input.byteLength)]);
  return input;
}

/**
 * Reads a gzip-compressed tar-split (a buffer or a stream), entry by entry, refusing a file name seen
 * twice as tar-split's reader does.
 */
export async function* readTarSplit(
  input: Uint8Array | AsyncIterable<Uint8Array>,
): AsyncGenerator<TarSplitEntry> {
  const gunzip = createGunzip({ chunkSize: 256 * 1024, finishFlush: zlibConstants.Z_SYNC_FLUSH });
  const source = Readable.from(toIterable(input));
  source.on('error', (error) => gunzip.destroy(error));
  source.pipe(gunzip);
  const seen = new Set<string>();
  let rest = '';
  let lineNumber = 0;
  const decoder = new TextDecoder('utf-8');
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      const text = rest + decoder.decode(chunk, { stream: true });
      let start = 0;
      for (;;) {
        const newline = text.indexOf('\n', start);
        if (newline === -1) break;
        const line = text.slice(start, newline);
        start = newline + 1;
        lineNumber++;
        if (line.trim() === '') continue;
        const entry = parseEntry(line, lineNumber);
        if (entry.type === 'file') {
          const clean = cleanName(entry.nameBytes.toString('latin1'));
          if (seen.has(clean)) throw invalidTarSplit(`file "${entry.name}" appears twice`);
          seen.add(clean);
        }
        yield entry;
      }
      rest = text.slice(start);
    }
  } catch (error) {
    if (error instanceof GantryError) throw error;
    throw invalidTarSplit(`cannot be read: ${(error as Error).message}`);
  } finally {
    source.destroy();
    gunzip.destroy();
  }
  rest += decoder.decode();
  if (rest.trim() !== '') yield parseEntry(rest, lineNumber + 1);
}

/** Opens one file's content for reassembly: its name as stored in the tar (UTF-8 and exact bytes). */
export type TarSplitFileGetter = (name: string, nameBytes: Buffer) => Promise<AsyncIterable<Uint8Array>>;

export interface AssembleOptions {
  signal?: AbortSignal;
}

/**
 * Regenerates a layer tar from its tar-split and the files' content, as a stream. Every file's size and
 * CRC-64 are checked: a file that changed fails the stream with `ERR_GANTRY_DIGEST_MISMATCH` naming it.
 */
export function assembleTar(
  tarSplit: Uint8Array | AsyncIterable<Uint8Array>,
  getFile: TarSplitFileGetter,
  options: AssembleOptions = {},
): Readable {
  return Readable.from(assembleTarChunks(tarSplit, getFile, options), {
    objectMode: false,
    highWaterMark: 1 << 20,
  });
}

/** `assembleTar` as an async generator of chunks. */
export async function* assembleTarChunks(
  tarSplit: Uint8Array | AsyncIterable<Uint8Array>,
  getFile: TarSplitFileGetter,
  options: AssembleOptions = {},
): AsyncGenerator<Buffer> {
  const { signal } = options;
  for await (const entry of readTarSplit(tarSplit)) {
    signal?.throwIfAborted();
    if (entry.type === 'segment') {
      if (entry.payload.length > 0) yield entry.payload;
      continue;
    }
    if (entry.size === 0) continue;
    const crc = new Crc64();
    let length = 0;
    const content = await getFile(entry.name, entry.nameBytes);
    for await (const piece of content) {
      const chunk = Buffer.isBuffer(piece)
        ? piece
        : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
      length += chunk.length;
      if (length > entry.size) break;
      crc.update(chunk);
      yield chunk;
    }
    if (length !== entry.size) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `layer file "${entry.name}" has ${length > entry.size ? 'more' : 'fewer'} bytes than the ${entry.size} its tar-split records`,
      );
    }
    const sum = crc.digest();
    if (entry.crc64 === null || !sum.equals(entry.crc64)) {
      throw new GantryError(
        ErrorCodes.DigestMismatch,
        `layer file "${entry.name}" does not match the CRC-64 its tar-split records (the file changed)`,
      );
    }
  }
}
