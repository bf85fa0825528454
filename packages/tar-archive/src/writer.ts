/**
 * A streaming tar writer on tar-stream's `pack`, with fixed metadata so that the same content always gives
 * the same archive bytes.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  abortError,
  ErrorCodes,
  GantryError,
  makeOwnedTemporaryDirectory,
  throwIfAborted,
} from '@gantry/core/transport';
import type TarStream from 'tar-stream';
import { normalizeEntryName } from './names.js';

const requireModule = createRequire(import.meta.url);
let tarStreamModule: typeof TarStream | undefined;
/**
 * tar-stream, loaded on first use: only tars written to a stream need it, and loading it (with its
 * dependencies) costs every command ~10 ms at start otherwise.
 */
function tarStream(): typeof TarStream {
  tarStreamModule ??= requireModule('tar-stream') as typeof TarStream;
  return tarStreamModule;
}

/** Options of `createTarWriter`. */
export interface TarWriterOptions {
  /** Aborts writing: the output is destroyed and pending operations reject with `ERR_GANTRY_ABORTED`. */
  signal?: AbortSignal;
  /** Directory for spool files of entries of unknown size; defaults to the OS temporary directory. */
  temporaryDirectory?: string;
  /** Modification time written in every header; default the Unix epoch (reproducible archives). */
  mtime?: Date;
}

/** Per-entry options. */
export interface TarEntryOptions {
  /** Permission bits; default 0o644 for files, 0o755 for directories, 0o777 for symbolic links. */
  mode?: number;
  signal?: AbortSignal;
}

type ByteSource = Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

interface TarHeader {
  name: string;
  type: 'file' | 'directory' | 'symlink';
  size: number;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  mtime: Date;
  linkname?: string;
}

/**
 * The normalised name (`normalizeEntryName`, directories with a trailing `/`) and the mode (default 0o644
 * for files, 0o755 for directories, 0o777 for symbolic links) of an entry, as both tar writers write them.
 */
export function entryNameAndMode(
  name: string,
  type: 'file' | 'directory' | 'symlink',
  options: TarEntryOptions,
): { name: string; mode: number } {
  const normalized = normalizeEntryName(name);
  const defaultMode = type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644;
  return { name: type === 'directory' ? `${normalized}/` : normalized, mode: options.mode ?? defaultMode };
}

/**
 * Writes a tar archive to `output`, one entry at a time, in the order the `add…` calls are made (calls may
 * overlap; they are queued). Every header has uid/gid 0, no user/group names, and the fixed `mtime`.
 * Names are written as given after normalisation (`normalizeEntryName`), directories with a trailing `/`;
 * long names use PAX headers.
 *
 * Once any entry fails (a source stream error, a size mismatch), the archive is corrupt: the writer is
 * failed, every later call rejects, `finish()` rejects, and the output stream is destroyed. Callers writing
 * to a file remove it; callers writing to a pipe close it.
 */
export class TarWriter {
  readonly #pack = tarStream().pack();
  readonly #output: Writable;
  readonly #options: TarWriterOptions;
  readonly #done: Promise<void>;
  #queue: Promise<void> = Promise.resolve();
  #failure: Error | undefined;
  #finished = false;
  #bytesWritten = 0;

  constructor(output: Writable, options: TarWriterOptions = {}) {
    this.#output = output;
    this.#options = options;
    const pack = this.#pack as unknown as Readable;
    pack.on('data', (chunk: Uint8Array) => {
      this.#bytesWritten += chunk.byteLength;
    });
    this.#done = pipeline(pack, output);
    this.#done.catch((error: Error) => this.#fail(error));
    const signal = options.signal;
    if (signal) {
      const onAbort = () => this.abort(abortError(signal));
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      this.#done.finally(() => signal.removeEventListener('abort', onAbort)).catch(() => {});
    }
  }

  /** Bytes of archive produced so far. */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  #fail(error: Error): void {
    if (this.#failure) return;
    this.#failure = error;
    this.#pack.destroy(error);
    this.#output.destroy(error);
  }

  #enqueue<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.#failure) throw this.#failure;
      if (this.#finished) throw new GantryError(ErrorCodes.Internal, 'tar writer is already finished');
      return operation();
    });
    this.#queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  #header(
    name: string,
    type: 'file' | 'directory' | 'symlink',
    size: number,
    options: TarEntryOptions,
  ): TarHeader {
    return {
      ...entryNameAndMode(name, type, options),
      type,
      size,
      uid: 0,
      gid: 0,
      uname: '',
      gname: '',
      mtime: this.#options.mtime ?? new Date(0),
    };
  }

  /** Writes one entry's header and data (all of `source`, which must be exactly `header.size` bytes). */
  async #writeEntry(
    header: TarHeader,
    source: ByteSource | undefined,
    signal: AbortSignal | undefined,
    padOnSourceError = false,
  ): Promise<void> {
    throwIfAborted(signal);
    let sink!: Writable;
    const entryDone = new Promise<void>((resolve, reject) => {
      sink = this.#pack.entry(header, (error) => (error ? reject(error) : resolve())) as unknown as Writable;
      // Failures reach the caller through the entry callback and the writer's failure.
      sink.on('error', () => {});
    });
    entryDone.catch(() => {});
    const outputFailed = this.#done.then(() => {
      throw new GantryError(ErrorCodes.Internal, `tar output ended while writing "${header.name}"`);
    });
    outputFailed.catch(() => {});
    const write = async (chunk: Uint8Array) => {
      if (this.#failure) throw this.#failure;
      if (!sink.write(chunk)) {
        await Promise.race([
          new Promise<void>((resolve) => {
            const done = () => {
              sink.off('drain', done);
              sink.off('close', done);
              resolve();
            };
            sink.on('drain', done);
            sink.on('close', done);
          }),
          outputFailed,
        ]);
      }
    };
    let written = 0;
    let sourceError: Error | undefined;
    try {
      if (source) {
        try {
          for await (const chunk of source as AsyncIterable<Uint8Array>) {
            throwIfAborted(signal);
            if (this.#failure) throw this.#failure;
            if (written + chunk.byteLength > header.size) {
              throw new GantryError(
                ErrorCodes.SizeMismatch,
                `tar entry "${header.name}": size mismatch: expected ${header.size} bytes, got more`,
              );
            }
            written += chunk.byteLength;
            await write(chunk);
          }
          if (written !== header.size) {
            throw new GantryError(
              ErrorCodes.SizeMismatch,
              `tar entry "${header.name}": size mismatch: expected ${header.size} bytes, got ${written}`,
            );
          }
        } catch (error) {
          const failure = error instanceof Error ? error : new Error(String(error));
          if (!padOnSourceError || this.#failure || signal?.aborted) throw failure;
          sourceError = failure;
          if (typeof (source as Readable).destroy === 'function') (source as Readable).destroy();
          // Keep the archive valid: complete the entry with zeros; the caller discards the entry.
          const zeros = Buffer.alloc(64 * 1024);
          while (written < header.size) {
            const count = Math.min(zeros.length, header.size - written);
            written += count;
            await write(zeros.subarray(0, count));
          }
        }
      }
      sink.end();
      await Promise.race([entryDone, outputFailed]);
    } catch (error) {
      const failure = this.#failure ?? (error instanceof Error ? error : new Error(String(error)));
      this.#fail(failure);
      if (source && typeof (source as Readable).destroy === 'function') (source as Readable).destroy();
      throw failure;
    }
    if (sourceError) throw sourceError;
  }

  /** Adds a file with the given bytes. */
  addBytes(name: string, bytes: Uint8Array | string, options: TarEntryOptions = {}): Promise<void> {
    const data = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
    return this.#enqueue(() =>
      this.#writeEntry(this.#header(name, 'file', data.byteLength, options), [data], options.signal),
    );
  }

  /**
   * Adds a file whose data is `source`, which must produce exactly `size` bytes (the size goes into the
   * header, before the data). A different count fails the writer with `ERR_GANTRY_SIZE_MISMATCH`.
   *
   * With `padOnSourceError`, a failure of `source` itself (it errors, or yields a wrong byte count) does not
   * fail the writer: the entry is completed with zero bytes so the archive stays valid, and the call
   * rejects with the source's error. The caller must then treat the entry as garbage (e.g. not reference
   * it). Output failures and aborts still fail the writer.
   */
  addStream(
    name: string,
    source: ByteSource,
    size: number,
    options: TarEntryOptions & { padOnSourceError?: boolean } = {},
  ): Promise<void> {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new GantryError(ErrorCodes.Internal, `tar entry "${name}": invalid size ${size}`);
    }
    return this.#enqueue(() =>
      this.#writeEntry(
        this.#header(name, 'file', size, options),
        source,
        options.signal,
        options.padOnSourceError,
      ),
    );
  }

  /**
   * Adds a file whose size is not known in advance: `source` is first copied to a spool file (in
   * `temporaryDirectory`), because a tar header carries the size and precedes the data, and the output may
   * be a pipe where the header cannot be patched afterwards. Spooling happens before the entry takes its
   * turn in the queue, so it overlaps with earlier entries being written. Resolves with the size written.
   */
  async addStreamOfUnknownSize(
    name: string,
    source: ByteSource,
    options: TarEntryOptions = {},
  ): Promise<number> {
    if (this.#failure) throw this.#failure;
    const spool = await spoolToTemporaryFile(source, this.#options.temporaryDirectory, options.signal);
    try {
      const size = spool.size;
      await this.#enqueue(() =>
        this.#writeEntry(
          this.#header(name, 'file', size, options),
          createReadStream(spool.path),
          options.signal,
        ),
      );
      return size;
    } finally {
      await spool.remove();
    }
  }

  /** Adds a directory entry (`name/`). */
  addDirectory(name: string, options: TarEntryOptions = {}): Promise<void> {
    return this.#enqueue(() =>
      this.#writeEntry(this.#header(name, 'directory', 0, options), undefined, options.signal),
    );
  }

  /** Adds a symbolic link `name` → `target` (written as given). */
  addSymlink(name: string, target: string, options: TarEntryOptions = {}): Promise<void> {
    return this.#enqueue(() =>
      this.#writeEntry(
        { ...this.#header(name, 'symlink', 0, options), linkname: target },
        undefined,
        options.signal,
      ),
    );
  }

  /**
   * Writes the end-of-archive blocks and waits until `output` has flushed everything. Rejects with the
   * writer's failure, if any.
   */
  finish(): Promise<void> {
    return this.#enqueue(async () => {
      this.#finished = true;
      this.#pack.finalize();
      await this.#done;
    });
  }

  /** Fails the writer: destroys the output and makes pending and later calls reject with `error`. */
  abort(error: Error = new GantryError(ErrorCodes.Aborted, 'tar writing aborted')): void {
    this.#fail(error);
  }
}

/** Creates a `TarWriter` writing to `output`. */
export function createTarWriter(output: Writable, options: TarWriterOptions = {}): TarWriter {
  return new TarWriter(output, options);
}

/** A spool file holding a stream's bytes. */
export interface SpoolFile {
  path: string;
  size: number;
  /** Removes the spool file and its directory. */
  remove(): Promise<void>;
}

/** Copies `source` into a new file under `temporaryDirectory` (default the OS temporary directory). */
export async function spoolToTemporaryFile(
  source: ByteSource,
  temporaryDirectory: string | undefined,
  signal?: AbortSignal,
): Promise<SpoolFile> {
  throwIfAborted(signal);
  const directory = await makeOwnedTemporaryDirectory('spool', temporaryDirectory ?? os.tmpdir());
  const remove = () => rm(directory, { recursive: true, force: true });
  const filePath = path.join(directory, 'data');
  try {
    const output = createWriteStream(filePath);
    if (signal) await pipeline(source, output, { signal });
    else await pipeline(source, output);
    const { size } = await stat(filePath);
    return { path: filePath, size, remove };
  } catch (error) {
    await remove();
    if (signal?.aborted) throw abortError(signal);
    throw error;
  }
}
