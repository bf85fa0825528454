/**
 * A tar writer on a regular file, with positional writes so that an entry can be written before its
 * name and size are known (its header is written when the data has ended) and an unfinished or failed
 * entry can be taken back (the file is truncated to where the entry began).
 *
 * Format: POSIX ustar headers (what GNU tar, Go's archive/tar, skopeo and umoci read); names that do
 * not fit ustar's name/prefix fields get a PAX extended header (`path`); sizes of 8 GiB and more use the
 * base-256 encoding of the size field (read by GNU tar and Go). Entries are regular files (mode 0644)
 * and directories (0755) owned by 0:0 (root), as containers/image writes archives.
 */
import type { FileHandle } from 'node:fs/promises';
import { ErrorCodes, GantryError, throwIfAborted } from '@gantry/core';

const blockSize = 512;
/** Data is written in batches of at least this many bytes. */
const writeBatchSize = 1024 * 1024;
const zeroBlock = Buffer.alloc(blockSize);

function writeString(header: Buffer, value: string, offset: number, length: number): void {
  header.write(value, offset, length, 'utf8');
}

function writeOctal(header: Buffer, value: number, offset: number, length: number): void {
  header.write(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, length, 'ascii');
}

function writeSize(header: Buffer, size: number): void {
  if (size < 8 ** 11) {
    writeOctal(header, size, 124, 12);
    return;
  }
  // base-256: the first byte's high bit set, the value big-endian in the remaining 11 bytes.
  header.fill(0, 124, 136);
  header[124] = 0x80;
  let remaining = BigInt(size);
  for (let position = 135; position > 124; position--) {
    header[position] = Number(remaining & 0xffn);
    remaining >>= 8n;
  }
}

/** Splits a name into ustar's prefix (≤155 bytes) and name (≤100 bytes) fields; undefined when it cannot. */
export function splitUstarName(name: string): { prefix: string; name: string } | undefined {
  if (Buffer.byteLength(name) <= 100) return { prefix: '', name };
  for (let slash = name.indexOf('/'); slash !== -1; slash = name.indexOf('/', slash + 1)) {
    const prefix = name.slice(0, slash);
    const rest = name.slice(slash + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest !== '') {
      return { prefix, name: rest };
    }
  }
  return undefined;
}

interface HeaderFields {
  name: string;
  size: number;
  type: 'file' | 'directory' | 'pax';
  mtime: number;
}

/** Encodes one 512-byte ustar header. `fields.name` must fit (see `splitUstarName`). */
export function encodeUstarHeader(fields: HeaderFields): Buffer {
  const split = splitUstarName(fields.name);
  if (!split)
    throw new GantryError(ErrorCodes.Internal, `tar entry name ${fields.name} does not fit a ustar header`);
  const header = Buffer.alloc(blockSize);
  writeString(header, split.name, 0, 100);
  writeOctal(header, fields.type === 'directory' ? 0o755 : 0o644, 100, 8);
  writeOctal(header, 0, 108, 8);
  writeOctal(header, 0, 116, 8);
  writeSize(header, fields.size);
  writeOctal(header, fields.mtime, 136, 12);
  header.write('        ', 148, 8, 'ascii');
  header.write(fields.type === 'directory' ? '5' : fields.type === 'pax' ? 'x' : '0', 156, 1, 'ascii');
  header.write('ustar\0', 257, 6, 'ascii');
  header.write('00', 263, 2, 'ascii');
  writeString(header, fields.type === 'pax' ? '' : 'root', 265, 32);
  writeString(header, fields.type === 'pax' ? '' : 'root', 297, 32);
  writeOctal(header, 0, 329, 8);
  writeOctal(header, 0, 337, 8);
  writeString(header, split.prefix, 345, 155);
  let checksum = 0;
  for (const byte of header) checksum += byte;
  header.write(`${checksum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return header;
}

/** A PAX record `"<length> key=value\n"`, where length counts the whole record. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLength = Buffer.byteLength(body);
  let length = bodyLength + 1;
  while (String(length).length + bodyLength !== length) length = String(length).length + bodyLength;
  return `${length}${body}`;
}

function padding(size: number): number {
  return (blockSize - (size % blockSize)) % blockSize;
}

/** Where an entry started, to take it back. */
export interface EntryMark {
  readonly offset: number;
}

/**
 * Writes a tar archive into `handle` (opened for writing, empty). Not safe for concurrent use: callers
 * serialise entries.
 */
export class TarFileWriter {
  readonly #handle: FileHandle;
  readonly #mtime: number;
  #position = 0;
  #finished = false;

  constructor(handle: FileHandle, mtime: Date = new Date()) {
    this.#handle = handle;
    this.#mtime = Math.floor(mtime.getTime() / 1000);
  }

  /** Bytes written so far. */
  get position(): number {
    return this.#position;
  }

  async #write(bytes: Uint8Array): Promise<void> {
    let written = 0;
    while (written < bytes.byteLength) {
      const { bytesWritten } = await this.#handle.write(
        bytes,
        written,
        bytes.byteLength - written,
        this.#position,
      );
      written += bytesWritten;
      this.#position += bytesWritten;
    }
  }

  async #writeAt(bytes: Uint8Array, position: number): Promise<void> {
    let written = 0;
    while (written < bytes.byteLength) {
      const { bytesWritten } = await this.#handle.write(
        bytes,
        written,
        bytes.byteLength - written,
        position + written,
      );
      written += bytesWritten;
    }
  }

  #assertOpen(): void {
    if (this.#finished) throw new GantryError(ErrorCodes.Internal, 'tar writer used after finish()');
  }

  /** The header(s) for `name`: a PAX header first when the name does not fit ustar. */
  #headers(name: string, size: number, type: 'file' | 'directory'): Buffer {
    const headers: Buffer[] = [];
    if (!splitUstarName(name)) {
      const records = Buffer.from(paxRecord('path', name), 'utf8');
      headers.push(
        encodeUstarHeader({
          name: 'PaxHeaders.0/entry',
          size: records.byteLength,
          type: 'pax',
          mtime: this.#mtime,
        }),
        records,
        Buffer.alloc(padding(records.byteLength)),
      );
    }
    const shortName = splitUstarName(name) ? name : name.slice(-100).replace(/^\/+/, '');
    headers.push(encodeUstarHeader({ name: shortName, size, type, mtime: this.#mtime }));
    return Buffer.concat(headers);
  }

  /** Writes a directory entry (`name` ends with '/'). */
  async addDirectory(name: string): Promise<void> {
    this.#assertOpen();
    await this.#write(this.#headers(name, 0, 'directory'));
  }

  /** Writes a regular file entry holding `content`. */
  async addFile(name: string, content: Uint8Array): Promise<void> {
    this.#assertOpen();
    await this.#write(this.#headers(name, content.byteLength, 'file'));
    await this.#write(content);
    await this.#write(zeroBlock.subarray(0, padding(content.byteLength)));
  }

  /**
   * Writes a regular file entry from a stream. `name` may be given now or (when it is not known yet)
   * to `finish`, which then gets the name; a name given later must fit ustar (it cannot get a PAX header
   * afterwards). When `expectedSize` ≥ 0 the data must have exactly that size. The returned `finish`
   * writes the header; `rollback` (on any failure) takes the entry back.
   */
  async addFileFromStream(
    source: AsyncIterable<Uint8Array>,
    options: { name?: string; expectedSize: number; signal?: AbortSignal | undefined },
  ): Promise<{ size: number; mark: EntryMark; finish(name?: string): Promise<void> }> {
    this.#assertOpen();
    const mark: EntryMark = { offset: this.#position };
    let headerLength = blockSize;
    if (options.name !== undefined) {
      // Reserve the header(s) now (a PAX header's length depends only on the name).
      headerLength = this.#headers(options.name, 0, 'file').byteLength;
    }
    this.#position += headerLength;
    let size = 0;
    // Chunks are written in batches (one system call for many small chunks), one batch being written
    // while the next is read.
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    let inFlight: Promise<void> = Promise.resolve();
    const flush = async () => {
      if (pendingBytes === 0) return;
      const batch = pending.length === 1 ? (pending[0] as Uint8Array) : Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      await inFlight;
      inFlight = this.#write(batch);
      // Reported by the next flush (or the final wait); never left unhandled.
      inFlight.catch(() => undefined);
    };
    try {
      for await (const chunk of source) {
        throwIfAborted(options.signal);
        size += chunk.byteLength;
        if (options.expectedSize >= 0 && size > options.expectedSize) {
          throw new GantryError(
            ErrorCodes.SizeMismatch,
            `${options.name ?? 'blob'}: size mismatch: expected ${options.expectedSize} bytes, got more`,
          );
        }
        pending.push(chunk);
        pendingBytes += chunk.byteLength;
        if (pendingBytes >= writeBatchSize) await flush();
      }
      await flush();
      await inFlight;
      if (options.expectedSize >= 0 && size !== options.expectedSize) {
        throw new GantryError(
          ErrorCodes.SizeMismatch,
          `${options.name ?? 'blob'}: size mismatch: expected ${options.expectedSize} bytes, got ${size}`,
        );
      }
    } catch (error) {
      await inFlight.catch(() => undefined);
      await this.rollback(mark);
      throw error;
    }
    const dataEnd = this.#position;
    const finish = async (name?: string): Promise<void> => {
      const finalName = name ?? options.name;
      if (finalName === undefined)
        throw new GantryError(ErrorCodes.Internal, 'tar entry finished without a name');
      const headers = this.#headers(finalName, size, 'file');
      if (headers.byteLength !== headerLength) {
        throw new GantryError(
          ErrorCodes.Internal,
          `tar entry name ${finalName} needs a header of another length`,
        );
      }
      if (this.#position !== dataEnd)
        throw new GantryError(ErrorCodes.Internal, 'tar entry finished out of order');
      await this.#writeAt(headers, mark.offset);
      await this.#write(zeroBlock.subarray(0, padding(size)));
    };
    return { size, mark, finish };
  }

  /** Takes back everything written from `mark` on. */
  async rollback(mark: EntryMark): Promise<void> {
    await this.#handle.truncate(mark.offset);
    this.#position = mark.offset;
  }

  /** Writes the end-of-archive marker (two zero blocks). */
  async finish(): Promise<void> {
    this.#assertOpen();
    await this.#write(Buffer.alloc(2 * blockSize));
    this.#finished = true;
  }
}
