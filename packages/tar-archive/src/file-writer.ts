/**
 * A tar writer on a regular (seekable) file, with positional writes: an entry can be streamed into the
 * archive before its name and size are known, its header being written over a placeholder block when it
 * ends, and an entry that fails is taken back (the file is truncated to where it began).
 *
 * The headers are byte for byte those `TarWriter` (tar-stream's `pack`) writes for the same entries: ustar,
 * uid/gid 0, no user/group names, a fixed `mtime`, long names in a PAX header named `PaxHeader`. So the same
 * content gives the same archive whichever writer wrote it.
 */
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { abortError, ErrorCodes, GantryError, throwIfAborted } from '@gantry/core/transport';
import { normalizeEntryName } from './names.js';
import { entryNameAndMode, type TarEntryOptions } from './writer.js';

const blockSize = 512;
/** Data is written in batches of at least this many bytes (one system call for many small chunks). */
const writeBatchSize = 1024 * 1024;
/** …or of this many chunks (the `writev` limit of most systems). */
const maximumBatchChunks = 1024;
const zeroBlock = Buffer.alloc(blockSize);

type EntryType = 'file' | 'directory' | 'symlink' | 'pax-header';

/** A small entry waiting, with others, to be appended in one write (see `SeekableTarWriter.#appendSmall`). */
interface SmallEntry {
  bytes: Buffer;
  signal: AbortSignal | undefined;
  /** Resolves (no argument) or rejects the call that added the entry; each entry is settled once. */
  settle: ((error?: unknown) => void) | undefined;
}

/** @internal */
export interface HeaderFields {
  name: string;
  type: EntryType;
  size: number;
  mode: number;
  mtime: number;
  linkName?: string;
}

/** tar-stream's octal encoding: `digits` octal digits (all 7s when too large) and a space. */
function octal(value: number, digits: number): string {
  const text = value.toString(8);
  if (text.length > digits) return `${'7'.repeat(digits)} `;
  return `${text.padStart(digits, '0')} `;
}

const typeFlags: Record<EntryType, string> = { file: '0', symlink: '2', directory: '5', 'pax-header': 'x' };

/** One ustar header block as tar-stream encodes it; undefined when the name or link does not fit. */
function encodeHeader(fields: HeaderFields): Buffer | undefined {
  let name = fields.name;
  if (fields.type === 'directory' && !name.endsWith('/')) name += '/';
  if (Buffer.byteLength(name) !== name.length) return undefined; // not ASCII: PAX
  let prefix = '';
  while (name.length > 100) {
    const slash = name.indexOf('/');
    if (slash === -1) return undefined;
    prefix += prefix ? `/${name.slice(0, slash)}` : name.slice(0, slash);
    name = name.slice(slash + 1);
  }
  if (name.length > 100 || prefix.length > 155) return undefined;
  if (fields.linkName !== undefined && Buffer.byteLength(fields.linkName) > 100) return undefined;
  const header = Buffer.alloc(blockSize);
  header.write(name, 0, 'utf8');
  header.write(octal(fields.mode & 0o7777, 6), 100, 'ascii');
  header.write(octal(0, 6), 108, 'ascii');
  header.write(octal(0, 6), 116, 'ascii');
  if (fields.size.toString(8).length > 11) {
    // base-256: the first byte's high bit set, the value big-endian in the remaining 11 bytes.
    header[124] = 0x80;
    let remaining = fields.size;
    for (let position = 135; position > 124; position--) {
      header[position] = remaining % 256;
      remaining = Math.floor(remaining / 256);
    }
  } else {
    header.write(octal(fields.size, 11), 124, 'ascii');
  }
  header.write(octal(fields.mtime, 11), 136, 'ascii');
  header.write(typeFlags[fields.type], 156, 'ascii');
  if (fields.linkName) header.write(fields.linkName, 157, 'utf8');
  header.write('ustar\0', 257, 'latin1');
  header.write('00', 263, 'ascii');
  header.write(octal(0, 6), 329, 'ascii');
  header.write(octal(0, 6), 337, 'ascii');
  if (prefix) header.write(prefix, 345, 'utf8');
  let checksum = 8 * 0x20;
  for (let index = 0; index < blockSize; index++) {
    if (index < 148 || index >= 156) checksum += header[index]!;
  }
  header.write(octal(checksum, 6), 148, 'ascii');
  return header;
}

/** A PAX record `"<length> key=value\n"`, length counting the whole record (tar-stream's `addLength`). */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const length = Buffer.byteLength(body);
  let digits = Math.floor(Math.log10(length)) + 1;
  if (length + digits >= 10 ** digits) digits++;
  return `${length + digits}${body}`;
}

function padding(size: number): number {
  return (blockSize - (size % blockSize)) % blockSize;
}

/**
 * The header block(s) of an entry: a PAX header first when the name or link does not fit ustar. Their
 * length depends on the name and link only, not on the size (sizes of 8 GiB and more are written in
 * base-256, as tar-stream does).
 *
 * @internal Exported for tests.
 */
export function encodeHeaders(fields: HeaderFields): Buffer {
  const plain = encodeHeader(fields);
  if (plain) return plain;
  const records = Buffer.from(
    paxRecord('path', fields.name) + (fields.linkName ? paxRecord('linkpath', fields.linkName) : ''),
    'utf8',
  );
  const common = { name: 'PaxHeader', mode: fields.mode, mtime: fields.mtime };
  const linkName = fields.linkName ? { linkName: 'PaxHeader' } : {};
  return Buffer.concat([
    encodeHeader({ ...common, ...linkName, type: 'pax-header', size: records.byteLength })!,
    records,
    Buffer.alloc(padding(records.byteLength)),
    encodeHeader({ ...common, ...linkName, type: fields.type, size: fields.size })!,
  ]);
}

/** Whether `name` (after normalisation) fits one ustar header, as `OpenTarEntry.commit` requires. */
export function fitsUstarHeader(name: string): boolean {
  return (
    encodeHeader({ name: normalizeEntryName(name), type: 'file', size: 0, mode: 0, mtime: 0 }) !== undefined
  );
}

/** Options of `SeekableTarWriter.beginEntry`. */
export interface BeginTarEntryOptions extends TarEntryOptions {
  /**
   * The entry's name, when it is known before the data (only the size is not): its header is reserved at
   * once, with a PAX header when the name does not fit ustar, and `commit` takes no name. Without it the
   * name is given to `commit` and must fit one ustar header.
   */
  name?: string;
  /**
   * Learns each chunk given to the entry's `write` once its bytes are in the file
   * (`PutBlobOptions.chunkWritten`); chunks not yet written when the entry is discarded are left alone.
   */
  chunkWritten?: (chunk: Uint8Array) => void;
}

/**
 * An entry being streamed into a `SeekableTarWriter`: it holds the writer (no other entry is written
 * until it is committed or discarded). Exactly one of `commit` and `discard` must be called.
 */
export interface OpenTarEntry {
  /** Data bytes written so far. */
  readonly size: number;
  /**
   * Appends data (batched: `chunk` is written later and must not be changed; a failed write rejects this or
   * a later call).
   */
  write(chunk: Uint8Array): Promise<void>;
  /** Appends the contents of a file (e.g. a spool file). */
  writeFile(path: string, signal?: AbortSignal): Promise<void>;
  /**
   * Ends the data, writes the header over the placeholder and pads the entry. `name` is required when
   * `beginEntry` was given none, and must then fit one ustar header (see `fitsUstarHeader`): a PAX header
   * cannot be inserted before data already written. When `beginEntry` was given a name, `name` may be
   * omitted (it must be the same otherwise) and `options` default to those given to `beginEntry`. A
   * failed commit takes the entry back.
   */
  commit(name?: string, options?: TarEntryOptions): Promise<void>;
  /** Takes the entry back: the archive is truncated to where it began. */
  discard(): Promise<void>;
}

/** The header an open entry begins with. */
interface ReservedHeader {
  /** Written when the entry begins. */
  header: Buffer;
  /** Whether `header` is the final one (`addStream`); otherwise it is overwritten at `commit`. */
  final: boolean;
  /** The name (and options) given to `beginEntry`, when there was one. */
  named?: { name: string; options: TarEntryOptions };
  /** Learns each chunk given to the entry's `write` once it is in the file (`addStream`'s `chunkWritten`). */
  written?: (chunk: Uint8Array) => void;
}

/**
 * Writes a tar archive into `handle` (a regular file opened for writing, empty), one entry at a time in
 * the order the calls are made (calls may overlap: they are queued; an open entry holds the queue until
 * it is committed or discarded).
 *
 * Unlike `TarWriter`, a failing source does not corrupt the archive: its entry is taken back and the call
 * rejects, and the writer stays usable. Output failures (a write error) and `abort()` fail the writer:
 * every later call rejects. The writer does not close `handle` except in `abort()`; `finish()` leaves it
 * to the caller.
 */
export class SeekableTarWriter {
  readonly #handle: FileHandle;
  readonly #mtime: number;
  #queue: Promise<void> = Promise.resolve();
  /** Operations queued or running. */
  #pending = 0;
  #position = 0;
  #failure: Error | undefined;
  #finished = false;
  #closed = false;
  /** Small entries queued as one write that has not started yet; more join it. */
  #smallBatch: SmallEntry[] | undefined;

  constructor(handle: FileHandle, options: { mtime?: Date; signal?: AbortSignal } = {}) {
    this.#handle = handle;
    this.#mtime = Math.floor((options.mtime ?? new Date(0)).getTime() / 1000);
    const signal = options.signal;
    if (signal) {
      if (signal.aborted) this.abort(abortError(signal));
      else {
        const onAbort = () => this.abort(abortError(signal));
        signal.addEventListener('abort', onAbort, { once: true });
        this.#stopListening = () => signal.removeEventListener('abort', onAbort);
      }
    }
  }

  /** Removes the abort listener (when the writer is finished or failed). */
  #stopListening: () => void = () => undefined;

  /** Bytes of archive written so far (the end of the last complete or open entry). */
  get bytesWritten(): number {
    return this.#position;
  }

  /** Whether nothing is being written or waiting to be: a `beginEntry` now would be granted at once. */
  get isIdle(): boolean {
    return this.#pending === 0;
  }

  #checkUsable(): void {
    if (this.#failure) throw this.#failure;
    if (this.#finished) throw new GantryError(ErrorCodes.Internal, 'tar writer is already finished');
  }

  /** Runs `operation` when every earlier one is done; it holds the queue until `held` settles. */
  #enqueue<T>(operation: () => Promise<T>, held?: (result: T) => Promise<void>): Promise<T> {
    // Small entries added after this operation must not join a batch queued before it.
    this.#smallBatch = undefined;
    this.#pending++;
    const run = this.#queue.then(() => {
      this.#checkUsable();
      return operation();
    });
    const release = run.then(
      (result) => (held ? held(result) : undefined),
      () => undefined,
    );
    this.#queue = release.finally(() => {
      this.#pending--;
    });
    return run;
  }

  #fail(error: unknown): Error {
    const failure = error instanceof Error ? error : new Error(String(error));
    this.#failure ??= failure;
    return this.#failure;
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

  /** Appends bytes at the end; an output failure fails the writer. */
  async #append(bytes: Uint8Array): Promise<void> {
    const position = this.#position;
    this.#position += bytes.byteLength;
    try {
      await this.#writeAt(bytes, position);
    } catch (error) {
      throw this.#fail(error);
    }
  }

  /** Appends chunks with one `writev` (no copy into one buffer); an output failure fails the writer. */
  async #appendChunks(chunks: Uint8Array[], length: number): Promise<void> {
    const position = this.#position;
    this.#position += length;
    try {
      const { bytesWritten } = await this.#handle.writev(chunks, position);
      if (bytesWritten < length) {
        // A short write (rare on regular files): write the rest.
        await this.#writeAt(Buffer.concat(chunks, length).subarray(bytesWritten), position + bytesWritten);
      }
    } catch (error) {
      throw this.#fail(error);
    }
  }

  #fields(
    name: string,
    type: 'file' | 'directory' | 'symlink',
    size: number,
    options: TarEntryOptions,
  ): HeaderFields {
    return { ...entryNameAndMode(name, type, options), type, size, mtime: this.#mtime };
  }

  /** Adds a file with the given bytes. */
  addBytes(name: string, bytes: Uint8Array | string, options: TarEntryOptions = {}): Promise<void> {
    const data = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
    const header = encodeHeaders(this.#fields(name, 'file', data.byteLength, options));
    return this.#appendSmall(
      Buffer.concat([header, data, zeroBlock.subarray(0, padding(data.byteLength))]),
      options.signal,
    );
  }

  /** Adds a directory entry (`name/`). */
  addDirectory(name: string, options: TarEntryOptions = {}): Promise<void> {
    const header = encodeHeaders(this.#fields(name, 'directory', 0, options));
    return this.#appendSmall(header, options.signal);
  }

  /** Adds a symbolic link `name` → `target` (written as given). */
  addSymlink(name: string, target: string, options: TarEntryOptions = {}): Promise<void> {
    const header = encodeHeaders({ ...this.#fields(name, 'symlink', 0, options), linkName: target });
    return this.#appendSmall(header, options.signal);
  }

  /**
   * Appends a whole small entry (headers, data and padding). Entries added one after another while the
   * writer is busy (e.g. without awaiting each call) are written together, with one system call, once
   * their turn comes; each call still settles on its own (one whose `signal` fired meanwhile rejects
   * and is left out).
   */
  #appendSmall(bytes: Buffer, signal: AbortSignal | undefined): Promise<void> {
    const part: SmallEntry = { bytes, signal, settle: undefined };
    const settled = new Promise<void>((resolve, reject) => {
      part.settle = (error) => (error === undefined ? resolve() : reject(error));
    });
    if (this.#smallBatch) {
      this.#smallBatch.push(part);
      return settled;
    }
    const batch: SmallEntry[] = [part];
    this.#enqueue(async () => {
      // Later entries start a new batch.
      if (this.#smallBatch === batch) this.#smallBatch = undefined;
      const written: SmallEntry[] = [];
      for (const entry of batch) {
        if (entry.signal?.aborted) entry.settle!(abortError(entry.signal));
        else written.push(entry);
      }
      if (written.length > 0) await this.#append(Buffer.concat(written.map((entry) => entry.bytes)));
      for (const entry of written) entry.settle!();
    }).catch((error: unknown) => {
      if (this.#smallBatch === batch) this.#smallBatch = undefined;
      for (const entry of batch) entry.settle!(error);
    });
    // After `#enqueue`, which ends any earlier batch: entries join only a batch queued last.
    this.#smallBatch = batch;
    return settled;
  }

  /**
   * Adds a file whose data is `source`, which must produce exactly `size` bytes. When `source` fails or
   * yields another count (`ERR_GANTRY_SIZE_MISMATCH`), the entry is taken back and the call rejects; the
   * writer stays usable. `options.chunkWritten`, when given, gets each of `source`'s chunks once its bytes
   * are in the file (`PutBlobOptions.chunkWritten`); chunks of a failed entry are left alone.
   */
  async addStream(
    name: string,
    source: AsyncIterable<Uint8Array>,
    size: number,
    options: TarEntryOptions & { chunkWritten?: (chunk: Uint8Array) => void } = {},
  ): Promise<void> {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new GantryError(ErrorCodes.Internal, `tar entry "${name}": invalid size ${size}`);
    }
    const fields = this.#fields(name, 'file', size, options);
    const entry = await this.#beginEntry({
      header: encodeHeaders(fields),
      final: true,
      ...(options.chunkWritten ? { written: options.chunkWritten } : {}),
    });
    try {
      for await (const chunk of source) {
        throwIfAborted(options.signal);
        if (entry.size + chunk.byteLength > size) {
          throw new GantryError(
            ErrorCodes.SizeMismatch,
            `tar entry "${fields.name}": size mismatch: expected ${size} bytes, got more`,
          );
        }
        await entry.write(chunk);
      }
      if (entry.size !== size) {
        throw new GantryError(
          ErrorCodes.SizeMismatch,
          `tar entry "${fields.name}": size mismatch: expected ${size} bytes, got ${entry.size}`,
        );
      }
    } catch (error) {
      await entry.discard();
      throw error;
    }
    await entry.commit(name, options);
  }

  /**
   * Opens an entry whose size (and, unless `options.name` is given, name) is given when it ends
   * (`commit`). Resolves when every earlier entry is written; until the entry is committed or discarded,
   * later entries wait. An invalid `options.name` rejects (`normalizeEntryName`).
   */
  async beginEntry(options: BeginTarEntryOptions = {}): Promise<OpenTarEntry> {
    const written = options.chunkWritten ? { written: options.chunkWritten } : {};
    if (options.name === undefined) return this.#beginEntry({ header: zeroBlock, final: false, ...written });
    const named = { name: options.name, options };
    // The reserved header(s), with size 0: the length is the final one (it does not depend on the size).
    const header = encodeHeaders(this.#fields(options.name, 'file', 0, options));
    return this.#beginEntry({ header, final: false, named, ...written });
  }

  #beginEntry(reserved: ReservedHeader): Promise<OpenTarEntry> {
    let settle!: () => void;
    const settled = new Promise<void>((resolve) => {
      settle = resolve;
    });
    return this.#enqueue(
      async () => this.#openEntry(reserved, settle),
      () => settled,
    );
  }

  /** The final header of an entry begun without `final`, written over its placeholder at `commit`. */
  #committedHeader(
    reserved: ReservedHeader,
    size: number,
    name: string | undefined,
    options: TarEntryOptions | undefined,
  ): Buffer {
    const named = reserved.named;
    if (named) {
      if (name !== undefined && name !== named.name) {
        throw new GantryError(
          ErrorCodes.Internal,
          `tar entry begun as "${named.name}" cannot be committed as "${name}"`,
        );
      }
      const header = encodeHeaders(this.#fields(named.name, 'file', size, options ?? named.options));
      if (header.byteLength !== reserved.header.byteLength) {
        throw new GantryError(ErrorCodes.Internal, `tar entry "${named.name}": header length changed`);
      }
      return header;
    }
    if (name === undefined) {
      throw new GantryError(ErrorCodes.Internal, 'tar entry committed without a name');
    }
    const header = encodeHeader(this.#fields(name, 'file', size, options ?? {}));
    if (!header) {
      throw new GantryError(
        ErrorCodes.Internal,
        `tar entry name "${name}" does not fit a ustar header; it cannot be given after the data`,
      );
    }
    return header;
  }

  async #openEntry(reserved: ReservedHeader, settle: () => void): Promise<OpenTarEntry> {
    const start = this.#position;
    try {
      await this.#append(reserved.header);
    } catch (error) {
      settle();
      throw error;
    }
    let size = 0;
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    // One batch is written while the next one is gathered.
    let inFlight: Promise<void> = Promise.resolve();
    let done = false;
    const flush = async () => {
      if (pendingBytes === 0) return;
      const batch = pending;
      const batchBytes = pendingBytes;
      pending = [];
      pendingBytes = 0;
      await inFlight;
      const written = reserved.written;
      inFlight = this.#appendChunks(batch, batchBytes);
      if (written !== undefined) {
        inFlight = inFlight.then(() => {
          for (const chunk of batch) written(chunk);
        });
      }
      inFlight.catch(() => undefined);
    };
    const assertOpen = () => {
      if (done) throw new GantryError(ErrorCodes.Internal, 'tar entry used after commit() or discard()');
      if (this.#failure) throw this.#failure;
    };
    const write = async (chunk: Uint8Array) => {
      assertOpen();
      size += chunk.byteLength;
      pending.push(chunk);
      pendingBytes += chunk.byteLength;
      if (pendingBytes >= writeBatchSize || pending.length >= maximumBatchChunks) await flush();
    };
    const entry: OpenTarEntry = {
      get size() {
        return size;
      },
      write,
      writeFile: async (path: string, signal?: AbortSignal) => {
        const input = createReadStream(path, {
          highWaterMark: writeBatchSize,
          ...(signal ? { signal } : {}),
        });
        for await (const chunk of input) await write(chunk as Buffer);
      },
      commit: async (name?: string, entryOptions?: TarEntryOptions) => {
        if (done) throw new GantryError(ErrorCodes.Internal, 'tar entry used after commit() or discard()');
        done = true;
        try {
          if (this.#failure) throw this.#failure;
          await flush();
          await inFlight;
          if (!reserved.final) {
            const header = this.#committedHeader(reserved, size, name, entryOptions);
            try {
              await this.#writeAt(header, start);
            } catch (error) {
              throw this.#fail(error);
            }
          }
          await this.#append(zeroBlock.subarray(0, padding(size)));
        } catch (error) {
          await this.#takeBack(start);
          throw error;
        } finally {
          settle();
        }
      },
      discard: async () => {
        if (done) return;
        done = true;
        try {
          await inFlight.catch(() => undefined);
          await this.#takeBack(start);
        } finally {
          settle();
        }
      },
    };
    return entry;
  }

  /** Truncates the archive to `offset` (taking back an entry); a failure fails the writer. */
  async #takeBack(offset: number): Promise<void> {
    this.#position = offset;
    if (this.#failure) return;
    try {
      await this.#handle.truncate(offset);
    } catch (error) {
      this.#fail(error);
    }
  }

  /** Writes the end-of-archive blocks (two zero blocks) once every queued entry is written. */
  finish(): Promise<void> {
    return this.#enqueue(async () => {
      await this.#append(Buffer.alloc(2 * blockSize));
      this.#finished = true;
      this.#stopListening();
    });
  }

  /**
   * Fails the writer: pending and later calls reject with `error`, and `handle` is closed (after the writes
   * under way; the caller removes the file).
   */
  abort(error: Error = new GantryError(ErrorCodes.Aborted, 'tar writing aborted')): void {
    this.#fail(error);
    this.#stopListening();
    if (this.#closed) return;
    this.#closed = true;
    this.#handle.close().catch(() => undefined);
  }
}
