/**
 * A streaming tar reader for layer tars that keeps every byte that is not file content: header blocks
 * (ustar, GNU, PAX `x`/`g`, GNU long name/link `L`/`K`), their data, and padding. tar-split needs those
 * raw bytes to regenerate the tar byte for byte.
 *
 * Entries are interpreted as Go's `archive/tar` reader (the one vbatts/tar-split forks, which
 * containers/storage uses) interprets them, so names match what containers/storage writes into tar-split:
 * the ustar prefix joined with `/` (ustar/PAX magic only), PAX `path`/`linkpath` records, GNU long names,
 * octal or base-256 numbers, either header checksum (unsigned or signed).
 */
import { createHash, type Hash } from 'node:crypto';
import { ErrorCodes, GantryError } from '../errors.js';

/** A `GantryError` with code `ERR_GANTRY_INVALID_LAYER`: the message names the entry. */
function layerError(message: string, cause?: unknown): GantryError {
  return new GantryError(ErrorCodes.InvalidLayer, message, cause === undefined ? {} : { cause });
}

export const blockSize = 512;

/** What a tar entry is, from its header's type flag (GNU and PAX extension headers are folded into the entry they describe). */
export type TarEntryType =
  | 'file'
  | 'hardlink'
  | 'symlink'
  | 'character-device'
  | 'block-device'
  | 'directory'
  | 'fifo'
  | 'pax-global-header';

/** A tar entry's header fields, as Go's archive/tar reports them, with PAX and GNU extensions applied. */
export interface TarHeader {
  /** The entry's name as Go's archive/tar reports it, decoded as UTF-8 (lossy if the bytes are not UTF-8). */
  name: string;
  /** The exact bytes of the name. */
  nameBytes: Buffer;
  linkName: string;
  linkNameBytes: Buffer;
  type: TarEntryType;
  /** The header's type flag character. */
  typeFlag: string;
  /** Permission and set-id/sticky bits (`mode & 0o7777`). */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** The size field (PAX `size` applied). Header-only types carry no data whatever it says. */
  size: number;
  /** Modification time: whole seconds and nanoseconds (PAX `mtime` may carry a fraction). */
  mtimeSeconds: number;
  mtimeNanoseconds: number;
  /** Access time when the tar carries one (PAX `atime`, GNU header), else undefined. */
  atimeSeconds: number | undefined;
  atimeNanoseconds: number;
  devMajor: number;
  devMinor: number;
  /** `SCHILY.xattr.<name>` PAX records: extended attribute name → value bytes, in record order. */
  xattrs: Map<string, Buffer>;
  /** All PAX records of the entry (`x` header), keys → value bytes. */
  paxRecords: Map<string, Buffer>;
}

/** One entry of a tar stream: its header, the exact bytes that preceded its content, and its content size. */
export interface TarEntry {
  header: TarHeader;
  /**
   * Every byte read since the previous entry's content ended, up to this entry's content: the previous
   * entry's padding, then this entry's header blocks (PAX, GNU long name/link, the header itself).
   */
  raw: Buffer;
  /** Bytes of content that follow (0 for header-only types: links, devices, directories, fifos). */
  dataSize: number;
}

const utf8Decoder = new TextDecoder('utf-8');

/** The field's bytes up to its first NUL (a view); scanned here, the fields being short. */
function cString(block: Buffer, start: number, length: number): Buffer {
  const end = start + length;
  let nul = start;
  while (nul < end && block[nul] !== 0) nul++;
  return block.subarray(start, nul);
}

/** The last user or group name decoded, and its bytes: most entries of a layer repeat the one before. */
interface NameCache {
  bytes: Buffer;
  text: string;
}

/** A header's user or group name field, decoded as UTF-8 (up to its first NUL); `cache` saves decoding. */
function cachedName(block: Buffer, start: number, length: number, cache: NameCache): string {
  const end = start + length;
  let nul = start;
  while (nul < end && block[nul] !== 0) nul++;
  const bytes = cache.bytes;
  const size = nul - start;
  if (size === bytes.length) {
    let index = 0;
    while (index < size && block[start + index] === bytes[index]) index++;
    if (index === size) return cache.text;
  }
  cache.bytes = Buffer.from(block.subarray(start, nul));
  cache.text = cache.bytes.toString('utf8');
  return cache.text;
}

function isSpaceOrNul(byte: number): boolean {
  return byte === 0x20 || byte === 0;
}

/** Go's parseNumeric: base-256 when the high bit is set, else octal with spaces/NULs trimmed. */
function parseNumeric(
  block: Buffer,
  start: number,
  length: number,
  what: string,
  where: () => string,
): number {
  const first = block[start] as number;
  if (first & 0x80) {
    const invert = first & 0x40 ? 0xff : 0;
    let value = 0;
    for (let index = 0; index < length; index++) {
      let byte = (block[start + index] as number) ^ invert;
      if (index === 0) byte &= 0x7f;
      if (value > Number.MAX_SAFE_INTEGER / 256)
        throw layerError(`${where()}: the ${what} field (base-256) is too large`);
      value = value * 256 + byte;
    }
    return invert ? -value - 1 : value;
  }
  let begin = start;
  let end = start + length;
  while (begin < end && isSpaceOrNul(block[begin] as number)) begin++;
  while (end > begin && isSpaceOrNul(block[end - 1] as number)) end--;
  if (begin === end) return 0;
  // Go parses the text up to the first NUL.
  for (let index = begin; index < end; index++) {
    if (block[index] === 0) {
      end = index;
      break;
    }
  }
  let value = 0;
  for (let index = begin; index < end; index++) {
    const digit = (block[index] as number) - 0x30;
    if (digit < 0 || digit > 7) throw layerError(`${where()}: the ${what} field is not an octal number`);
    value = value * 8 + digit;
    if (value > Number.MAX_SAFE_INTEGER) throw layerError(`${where()}: the ${what} field is too large`);
  }
  return value;
}

function checksumMatches(block: Buffer, where: () => string): boolean {
  let stored: number;
  try {
    stored = parseNumeric(block, 148, 8, 'checksum', where);
  } catch {
    return false;
  }
  // The sum of the bytes with the checksum field counted as 8 spaces: unsigned (POSIX), or with each
  // byte above 127 taken as negative (what some old tars wrote), counted only when the first differs.
  let unsigned = 8 * 0x20;
  for (let index = 0; index < 148; index++) unsigned += block[index] as number;
  for (let index = 156; index < blockSize; index++) unsigned += block[index] as number;
  if (stored === unsigned) return true;
  let high = 0;
  for (let index = 0; index < blockSize; index++) {
    if ((index < 148 || index >= 156) && (block[index] as number) > 127) high++;
  }
  return stored === unsigned - 256 * high;
}

type Format = 'v7' | 'ustar' | 'star' | 'gnu';

/** `ustar` at the magic field (257), followed by NUL (POSIX) or a space (GNU); compared byte by byte. */
function formatOf(block: Buffer): Format {
  if (
    block[257] !== 0x75 || // u
    block[258] !== 0x73 || // s
    block[259] !== 0x74 || // t
    block[260] !== 0x61 || // a
    block[261] !== 0x72 // r
  ) {
    return 'v7';
  }
  if (block[262] === 0) {
    // star's trailer: "tar\0" in the last 4 bytes.
    return block[508] === 0x74 && block[509] === 0x61 && block[510] === 0x72 && block[511] === 0
      ? 'star'
      : 'ustar';
  }
  if (block[262] === 0x20 && block[263] === 0x20 && block[264] === 0) return 'gnu';
  return 'v7';
}

function isZeroBlock(block: Buffer): boolean {
  for (let index = 0; index < blockSize; index += 4) {
    if (block.readUInt32LE(index) !== 0) return false;
  }
  return true;
}

/** Parses PAX records (`"%d %s=%s\n"`) as Go's parsePAX does. */
function parsePaxRecords(data: Buffer, where: () => string): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let offset = 0;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    if (space === -1) throw layerError(`${where()}: malformed PAX record`);
    const lengthText = data.toString('latin1', offset, space);
    if (!/^[1-9][0-9]*$/.test(lengthText))
      throw layerError(`${where()}: malformed PAX record length "${lengthText}"`);
    const length = Number(lengthText);
    const end = offset + length;
    if (end > data.length || end <= space + 1 || data[end - 1] !== 0x0a)
      throw layerError(`${where()}: malformed PAX record`);
    const record = data.subarray(space + 1, end - 1);
    const equals = record.indexOf(0x3d);
    if (equals <= 0) throw layerError(`${where()}: malformed PAX record (no key)`);
    const key = record.toString('utf8', 0, equals);
    records.set(key, Buffer.from(record.subarray(equals + 1)));
    offset = end;
  }
  return records;
}

function parsePaxTime(
  value: Buffer,
  key: string,
  where: () => string,
): { seconds: number; nanoseconds: number } {
  const text = value.toString('latin1');
  const match = /^(-?)([0-9]+)(?:\.([0-9]*))?$/.exec(text);
  if (!match) throw layerError(`${where()}: PAX ${key} "${text}" is not a time`);
  const sign = match[1] === '-' ? -1 : 1;
  const seconds = Number(match[2]);
  const fraction = (match[3] ?? '').padEnd(9, '0').slice(0, 9);
  const nanoseconds = Number(fraction);
  if (sign < 0 && nanoseconds > 0) return { seconds: -seconds - 1, nanoseconds: 1e9 - nanoseconds };
  return { seconds: sign * seconds, nanoseconds };
}

function parsePaxInteger(value: Buffer, key: string, where: () => string): number {
  const text = value.toString('latin1');
  if (!/^-?[0-9]+$/.test(text)) throw layerError(`${where()}: PAX ${key} "${text}" is not an integer`);
  const number = Number(text);
  if (!Number.isSafeInteger(number)) throw layerError(`${where()}: PAX ${key} "${text}" is out of range`);
  return number;
}

const headerOnlyTypes = new Set(['1', '2', '3', '4', '5', '6']);
const emptyBuffer = Buffer.alloc(0);

/**
 * Pulls bytes from an async iterable of chunks, hashing (sha256, unless told not to) and counting
 * everything it takes.
 * Chunks are handed on as views where possible; only blocks that straddle chunks are copied (just their
 * bytes, never the rest of the chunk). With `views`, whole blocks are views of the input too.
 */
class ByteSource {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private current: Buffer = Buffer.alloc(0);
  private position = 0;
  private ended = false;
  readonly hash: Hash | undefined;
  count = 0;

  constructor(
    input: AsyncIterable<Uint8Array>,
    private readonly views: boolean,
    digest: boolean,
  ) {
    this.iterator = input[Symbol.asyncIterator]();
    this.hash = digest ? createHash('sha256') : undefined;
  }

  /** The next non-empty chunk of the input (hashed and counted), or undefined at its end. */
  private async pull(): Promise<Buffer | undefined> {
    if (this.ended) return undefined;
    for (;;) {
      const next = await this.iterator.next();
      if (next.done) {
        this.ended = true;
        return undefined;
      }
      const value = next.value;
      if (value.length === 0) continue;
      const chunk = Buffer.isBuffer(value)
        ? value
        : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      this.hash?.update(chunk);
      this.count += chunk.length;
      return chunk;
    }
  }

  /**
   * `take(length)` answered from the chunk at hand, without waiting: undefined when it holds fewer than
   * `length` bytes (then `take` must wait for the input).
   */
  takeNow(length: number): Buffer | undefined {
    if (this.current.length - this.position < length || length === 0) return undefined;
    const view = this.current.subarray(this.position, this.position + length);
    this.position += length;
    return this.views ? view : Buffer.from(view);
  }

  /** `some(max)` answered from the chunk at hand, without waiting: undefined when it is used up. */
  someNow(max: number): Buffer | undefined {
    const available = this.current.length - this.position;
    if (available === 0) return undefined;
    const length = Math.min(max, available);
    const out = this.current.subarray(this.position, this.position + length);
    this.position += length;
    return out;
  }

  /**
   * Exactly `length` bytes, or fewer at the end of input: a copy, or with `views` a view of the input
   * when they lie in one chunk.
   */
  async take(length: number): Promise<Buffer> {
    let available = this.current.length - this.position;
    if (available === 0 && length > 0) {
      const chunk = await this.pull();
      if (chunk === undefined) return Buffer.alloc(0);
      this.current = chunk;
      this.position = 0;
      available = chunk.length;
    }
    if (available >= length) {
      const view = this.current.subarray(this.position, this.position + length);
      this.position += length;
      return this.views ? view : Buffer.from(view);
    }
    // Straddling chunks: the bytes gathered into a buffer of their own.
    const out = Buffer.allocUnsafe(length);
    let filled = this.current.copy(out, 0, this.position);
    this.current = emptyBuffer;
    this.position = 0;
    while (filled < length) {
      const chunk = await this.pull();
      if (chunk === undefined) return out.subarray(0, filled);
      const used = Math.min(chunk.length, length - filled);
      chunk.copy(out, filled, 0, used);
      filled += used;
      this.current = chunk;
      this.position = used;
    }
    return out;
  }

  /** Up to `max` bytes as a view of the input (at least one byte), or undefined at the end of input. */
  async some(max: number): Promise<Buffer | undefined> {
    if (this.current.length - this.position === 0) {
      const chunk = await this.pull();
      if (chunk === undefined) return undefined;
      this.current = chunk;
      this.position = 0;
    }
    const available = Math.min(max, this.current.length - this.position);
    const out = this.current.subarray(this.position, this.position + available);
    this.position += available;
    return out;
  }

  close(): void {
    void this.iterator.return?.();
  }
}

/**
 * The raw pieces of an entry as one buffer: the piece itself when there is one, a view over pieces that
 * lie one after the other in the same memory (padding and header blocks taken as views of one chunk),
 * else a copy.
 */
function joinRaw(raw: Buffer[]): Buffer {
  if (raw.length === 1) return raw[0] as Buffer;
  const first = raw[0] as Buffer;
  let end = first.byteOffset + first.length;
  for (let index = 1; index < raw.length; index++) {
    const piece = raw[index] as Buffer;
    if (piece.buffer !== first.buffer || piece.byteOffset !== end) return Buffer.concat(raw);
    end += piece.length;
  }
  return Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset);
}

/**
 * Reads a tar stream entry by entry: `next()` returns the next real entry (meta headers folded in, with
 * their bytes in `raw`), `readData()` its content; after `next()` returned undefined, `end` holds the raw
 * end-of-archive bytes and `trailing()` yields whatever follows them.
 */
export class TarStreamReader {
  private readonly source: ByteSource;
  private remaining = 0;
  private padding = 0;
  private currentName = '';
  private finished = false;
  private readonly unameCache: NameCache = { bytes: emptyBuffer, text: '' };
  private readonly gnameCache: NameCache = { bytes: emptyBuffer, text: '' };
  /** Raw bytes read when the end of the archive was found (padding and the zero blocks). */
  end: Buffer = Buffer.alloc(0);

  /**
   * `views`: header blocks, padding and `raw` may be views of the input's chunks instead of copies (no
   * copy and no allocation for the common entry), for a caller whose input never reuses a chunk's memory
   * (a stream that hands out new buffers, as Node's decompressors and file streams do).
   * `digest: false`: the bytes read are not hashed (`digestHex` then throws), for a caller that hashes
   * the input itself (off this thread).
   */
  constructor(input: AsyncIterable<Uint8Array>, options: { views?: boolean; digest?: boolean } = {}) {
    this.source = new ByteSource(input, options.views === true, options.digest !== false);
  }

  /** Bytes read from the input so far. */
  get bytesRead(): number {
    return this.source.count;
  }

  /** sha256 (hex) of every byte read; call after `trailing()` is exhausted. */
  digestHex(): string {
    if (this.source.hash === undefined) throw new Error('TarStreamReader: made with digest: false');
    return this.source.hash.digest('hex');
  }

  private entryDescription(name: string | undefined, offset: number): string {
    return name === undefined ? `layer tar: header at byte ${offset}` : `layer tar: entry "${name}"`;
  }

  private async readBlock(raw: Buffer[], what: () => string): Promise<Buffer | undefined> {
    const block = await this.source.take(blockSize);
    if (block.length > 0) raw.push(block);
    if (block.length === 0) return undefined;
    if (block.length < blockSize) throw layerError(`${what()}: the tar ends in the middle of a header`);
    return block;
  }

  private async readSpecialData(size: number, raw: Buffer[], what: () => string): Promise<Buffer> {
    if (size > 1 << 20) throw layerError(`${what()}: metadata entry of ${size} bytes is larger than 1 MiB`);
    const data = await this.source.take(size);
    raw.push(data);
    if (data.length < size) throw layerError(`${what()}: the tar ends in the middle of an entry`);
    this.padding = (blockSize - (size % blockSize)) % blockSize;
    return data;
  }

  /** The next entry, or undefined at the end of the archive. Unread content of the previous entry is skipped. */
  async next(): Promise<TarEntry | undefined> {
    if (this.finished) return undefined;
    while (this.remaining > 0) {
      const chunk = await this.readData(this.remaining);
      if (chunk === undefined) break;
    }
    const raw: Buffer[] = [];
    let paxRecords: Map<string, Buffer> | undefined;
    let longName: Buffer | undefined;
    let longLink: Buffer | undefined;
    for (;;) {
      const offset = this.source.count;
      if (this.padding > 0) {
        const pad = this.source.takeNow(this.padding) ?? (await this.source.take(this.padding));
        if (pad.length > 0) raw.push(pad);
        if (pad.length < this.padding)
          throw layerError(
            `layer tar: entry "${this.currentName}": the tar ends in the middle of its padding`,
          );
        this.padding = 0;
      }
      const headerOffset = offset + 0;
      const where = () => this.entryDescription(undefined, headerOffset);
      let block = this.source.takeNow(blockSize);
      if (block !== undefined) raw.push(block);
      else block = await this.readBlock(raw, where);
      if (block === undefined || isZeroBlock(block)) {
        if (block !== undefined) {
          const second = await this.readBlock(raw, where);
          if (second !== undefined && !isZeroBlock(second))
            throw layerError(`${where()}: a zero block followed by a non-zero block`);
        }
        this.finished = true;
        this.end = Buffer.concat(raw);
        return undefined;
      }
      if (!checksumMatches(block, where))
        throw layerError(`${where()}: bad header checksum (not a tar, or a corrupt one)`);
      const format = formatOf(block);
      let nameBytes = cString(block, 0, 100);
      let linkNameBytes = cString(block, 157, 100);
      const typeFlag = String.fromCharCode(block[156] as number);
      const whereNamed = () => this.entryDescription(utf8Decoder.decode(nameBytes), headerOffset);
      let size = parseNumeric(block, 124, 12, 'size', whereNamed);
      const mode = parseNumeric(block, 100, 8, 'mode', whereNamed);
      let uid = parseNumeric(block, 108, 8, 'uid', whereNamed);
      let gid = parseNumeric(block, 116, 8, 'gid', whereNamed);
      let mtimeSeconds = parseNumeric(block, 136, 12, 'mtime', whereNamed);
      let mtimeNanoseconds = 0;
      let atimeSeconds: number | undefined;
      let atimeNanoseconds = 0;
      let uname = '';
      let gname = '';
      let devMajor = 0;
      let devMinor = 0;
      if (format !== 'v7') {
        uname = cachedName(block, 265, 32, this.unameCache);
        gname = cachedName(block, 297, 32, this.gnameCache);
        devMajor = parseNumeric(block, 329, 8, 'devmajor', whereNamed);
        devMinor = parseNumeric(block, 337, 8, 'devminor', whereNamed);
        let prefix: Buffer | undefined;
        if (format === 'ustar') prefix = cString(block, 345, 155);
        else if (format === 'star') prefix = cString(block, 345, 131);
        else if ((block[345] as number) !== 0) {
          try {
            atimeSeconds = parseNumeric(block, 345, 12, 'atime', whereNamed);
          } catch {
            atimeSeconds = undefined;
          }
        }
        if (prefix !== undefined && prefix.length > 0)
          nameBytes = Buffer.concat([prefix, Buffer.from('/'), nameBytes]);
      }
      if (size < 0) throw layerError(`${whereNamed()}: negative size`);
      if (typeFlag === 'x' || typeFlag === 'g') {
        const data = await this.readSpecialData(size, raw, whereNamed);
        const records = parsePaxRecords(data, whereNamed);
        if (typeFlag === 'g') {
          const path = records.get('path');
          const name = path ?? nameBytes;
          this.currentName = utf8Decoder.decode(name);
          return {
            header: {
              name: this.currentName,
              nameBytes: Buffer.from(name),
              linkName: '',
              linkNameBytes: Buffer.alloc(0),
              type: 'pax-global-header',
              typeFlag,
              mode: 0,
              uid: 0,
              gid: 0,
              uname: '',
              gname: '',
              size: 0,
              mtimeSeconds: 0,
              mtimeNanoseconds: 0,
              atimeSeconds: undefined,
              atimeNanoseconds: 0,
              devMajor: 0,
              devMinor: 0,
              xattrs: new Map(),
              paxRecords: records,
            },
            raw: Buffer.concat(raw),
            dataSize: 0,
          };
        }
        paxRecords = records;
        continue;
      }
      if (typeFlag === 'L' || typeFlag === 'K') {
        const data = await this.readSpecialData(size, raw, whereNamed);
        const value = cString(data, 0, data.length);
        if (typeFlag === 'L') longName = Buffer.from(value);
        else longLink = Buffer.from(value);
        continue;
      }
      const xattrs = new Map<string, Buffer>();
      if (paxRecords !== undefined) {
        for (const [key, value] of paxRecords) {
          switch (key) {
            case 'path':
              nameBytes = value;
              break;
            case 'linkpath':
              linkNameBytes = value;
              break;
            case 'size':
              size = parsePaxInteger(value, key, whereNamed);
              if (size < 0) throw layerError(`${whereNamed()}: negative PAX size`);
              break;
            case 'uid':
              uid = parsePaxInteger(value, key, whereNamed);
              break;
            case 'gid':
              gid = parsePaxInteger(value, key, whereNamed);
              break;
            case 'uname':
              uname = value.toString('utf8');
              break;
            case 'gname':
              gname = value.toString('utf8');
              break;
            case 'mtime': {
              const time = parsePaxTime(value, key, whereNamed);
              mtimeSeconds = time.seconds;
              mtimeNanoseconds = time.nanoseconds;
              break;
            }
            case 'atime': {
              const time = parsePaxTime(value, key, whereNamed);
              atimeSeconds = time.seconds;
              atimeNanoseconds = time.nanoseconds;
              break;
            }
            default:
              if (key.startsWith('SCHILY.xattr.')) xattrs.set(key.slice('SCHILY.xattr.'.length), value);
              else if (key.startsWith('GNU.sparse.'))
                throw layerError(`${whereNamed()}: GNU sparse files are not supported`);
          }
        }
      }
      if (longName !== undefined) nameBytes = longName;
      if (longLink !== undefined) linkNameBytes = longLink;
      const name = utf8Decoder.decode(nameBytes);
      const described = () => this.entryDescription(name, headerOffset);
      let type: TarEntryType;
      switch (typeFlag) {
        case '0':
        case '7':
          type = 'file';
          break;
        case '\0':
          type = name.endsWith('/') ? 'directory' : 'file';
          break;
        case '1':
          type = 'hardlink';
          break;
        case '2':
          type = 'symlink';
          break;
        case '3':
          type = 'character-device';
          break;
        case '4':
          type = 'block-device';
          break;
        case '5':
          type = 'directory';
          break;
        case '6':
          type = 'fifo';
          break;
        case 'S':
          throw layerError(`${described()}: GNU sparse files are not supported`);
        default:
          throw layerError(
            `${described()}: unsupported tar entry type "${typeFlag === '\0' ? '\\0' : typeFlag}"`,
          );
      }
      const dataSize = headerOnlyTypes.has(typeFlag) ? 0 : size;
      this.remaining = dataSize;
      this.padding = (blockSize - (dataSize % blockSize)) % blockSize;
      this.currentName = name;
      return {
        header: {
          name,
          nameBytes: Buffer.from(nameBytes),
          linkName: linkNameBytes.length === 0 ? '' : utf8Decoder.decode(linkNameBytes),
          // Copies (the block is a view of the input in `views` mode); no link: one shared empty buffer.
          linkNameBytes: linkNameBytes.length === 0 ? emptyBuffer : Buffer.from(linkNameBytes),
          type,
          typeFlag,
          mode: mode & 0o7777,
          uid,
          gid,
          uname,
          gname,
          size,
          mtimeSeconds,
          mtimeNanoseconds,
          atimeSeconds,
          atimeNanoseconds,
          devMajor,
          devMinor,
          xattrs,
          paxRecords: paxRecords ?? new Map(),
        },
        raw: joinRaw(raw),
        dataSize,
      };
    }
  }

  /**
   * The next piece of the current entry's content (a view into the input, at most `max` bytes), or
   * undefined when the content is exhausted. Fails when the tar ends early.
   */
  async readData(max = 1 << 20): Promise<Buffer | undefined> {
    if (this.remaining === 0) return undefined;
    const wanted = Math.min(max, this.remaining);
    const chunk = this.source.someNow(wanted) ?? (await this.source.some(wanted));
    if (chunk === undefined) {
      throw layerError(
        `layer tar: entry "${this.currentName}": the tar ends in the middle of its content (${this.remaining} bytes missing)`,
      );
    }
    this.remaining -= chunk.length;
    return chunk;
  }

  /**
   * `readData(max)` answered without waiting when the input's chunk at hand holds some of the content: the
   * next piece (a view, at most `max` bytes), or undefined when the content is exhausted or `readData`
   * must wait for the input (then call it).
   */
  readDataNow(max = 1 << 20): Buffer | undefined {
    if (this.remaining === 0) return undefined;
    const chunk = this.source.someNow(Math.min(max, this.remaining));
    if (chunk !== undefined) this.remaining -= chunk.length;
    return chunk;
  }

  /**
   * After the end of the archive: the bytes that follow the end blocks, in pieces of 1 MiB (the last one
   * shorter), whatever the input's chunking — as tar-split's Go reader gets them from a file.
   */
  async *trailing(): AsyncGenerator<Buffer> {
    if (!this.finished)
      throw new GantryError(
        'ERR_GANTRY_INTERNAL',
        'tar reader: trailing() called before the end of the archive',
      );
    const pieceSize = 1 << 20;
    let pending: Buffer[] = [];
    let pendingLength = 0;
    for (;;) {
      const chunk = await this.source.some(pieceSize - pendingLength);
      if (chunk === undefined) break;
      pending.push(Buffer.from(chunk));
      pendingLength += chunk.length;
      if (pendingLength === pieceSize) {
        yield Buffer.concat(pending);
        pending = [];
        pendingLength = 0;
      }
    }
    if (pendingLength > 0) yield Buffer.concat(pending);
  }

  /** Stops reading the input (on error or abort). */
  close(): void {
    this.source.close();
  }
}
