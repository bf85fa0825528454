/**
 * Writes OSTree objects into a `bare` repository on one worker thread: content objects (regular files
 * and symbolic links, hashed there with their header as libostree hashes them) and metadata objects
 * (dirtree, dirmeta) whose bytes and checksum the caller has. The main thread sends batches of
 * operations with their bytes packed into one transferred buffer; the worker answers each batch with
 * the checksums of the content objects it finished, in order.
 *
 * Each object is written as libostree writes it into a `bare` repository: a temporary file in the
 * repository's `tmp/` (so an object is never seen half-written), its owner, mode (set-id bits too),
 * extended attributes and a modification time of 0 set, then renamed to `objects/XX/YYYY.file`
 * (`.dirtree`, `.dirmeta`: mode 0644); a symbolic link is made as a link, owned as recorded. An object
 * already written by this process is not written again. Nothing is synced: the staging repository is
 * written out as a whole before it is published (see repository.ts).
 *
 * libostree's free-space reserve is kept as it keeps it: at `open`, the blocks the file system may
 * still give (`min-free-space-percent`, 3 % unless set) are counted, and a content object that would
 * take more is refused with libostree's message ("min-free-space-percent '3%' would be exceeded").
 *
 * Why a worker: for a layer of large files the SHA-256 of every byte and the writes run beside the main
 * thread's decompression and parsing; for many small files each object is five to seven system calls,
 * which the worker makes synchronously (an asynchronous `fs` call per system call is a trip through
 * libuv's pool and back to the main thread).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** The bytes of the batches sent and not answered yet (each counted as a whole buffer) before a call waits. */
const maxBytesInFlight = 4 * 1024 * 1024;
/**
 * A batch's buffer: bytes are copied into it as they come, and it is sent once full (or holding
 * `batchOperations`). The worker hands each buffer back with its reply, for the next batches: the
 * same few buffers carry the whole layer, so no fresh memory is touched (and faulted in) per batch.
 */
const batchBytes = 1024 * 1024;
/** A batch is also sent once it holds this many operations. */
const batchOperations = 512;
/** Buffers kept for reuse (enough for `maxBytesInFlight` and the batch being filled). */
const keptBuffers = 6;
const freeBuffers: ArrayBuffer[] = [];

/**
 * Operation kinds, as sent to the worker: a regular file's header (then `size` bytes in `Data`
 * operations), file bytes, a symbolic link's header, a metadata object.
 */
const Kind = { File: 0, Data: 1, Symlink: 2, Metadata: 3 } as const;

interface Operation {
  k: (typeof Kind)[keyof typeof Kind];
  /** Offset and length, in the batch's buffer, of the header (File, Symlink) or the bytes (Data, Metadata). */
  o: number;
  n: number;
  uid?: number;
  gid?: number;
  mode?: number;
  size?: number;
  /** Extended attributes to set: name (one character per byte) and value. */
  x?: Array<[string, Uint8Array]>;
  /** Symbolic link target (one character per byte). */
  t?: string;
  /** Metadata: checksum and extension. */
  c?: string;
  e?: string;
}

interface BatchReply {
  id: number;
  sums: string[];
  /** The batch's buffer, handed back. */
  buffer?: ArrayBuffer;
  failure?: { message: string; code?: string };
}

// Runs in the worker; plain JavaScript (the CLI bundle has no separate worker file).
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const crypto = require('node:crypto');
const writers = new Map();
const written = new Set();
const madeDirectories = new Set();
let temporaryCounter = 0;
let xattrCalls;
function xattrs() {
  if (xattrCalls) return xattrCalls;
  const koffi = require(workerData.koffi);
  const libc = koffi.load('libc.so.6');
  xattrCalls = {
    fset: libc.func('int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)'),
    lset: libc.func('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)'),
    errno: () => koffi.errno(),
  };
  return xattrCalls;
}
function xattrError(name, errno) {
  const error = new Error('setting extended attribute ' + name + ': errno ' + errno);
  error.code = errno === 28 ? 'ENOSPC' : errno === 1 ? 'EPERM' : errno === 95 ? 'ENOTSUP' : 'EIO';
  return error;
}
function setXattrs(fd, path, list) {
  if (!list || list.length === 0) return;
  const calls = xattrs();
  for (const [name, value] of list) {
    const result = fd >= 0 ? calls.fset(fd, name, value, value.length, 0) : calls.lset(path, name, value, value.length, 0);
    if (result !== 0) throw xattrError(name, calls.errno());
  }
}
function objectPath(writer, checksum, extension) {
  const directory = writer.objects + '/' + checksum.slice(0, 2);
  if (!madeDirectories.has(directory)) {
    try {
      fs.mkdirSync(directory, 0o775);
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    }
    madeDirectories.add(directory);
  }
  return directory + '/' + checksum.slice(2) + '.' + extension;
}
function temporaryPath(writer) {
  return writer.tmp + '/gantry-object-' + process.pid + '-' + writer.id + '-' + temporaryCounter++;
}
function reserve(writer, size) {
  if (writer.maxBlocks === undefined) return;
  const blocks = Math.ceil(size / writer.blockSize);
  if (blocks > writer.maxBlocks) {
    const error = new Error("min-free-space-percent '" + writer.percent + "%' would be exceeded, at least " + (size / 1e6).toFixed(1) + ' MB requested');
    error.code = 'ENOSPC';
    throw error;
  }
  writer.maxBlocks -= blocks;
}
function place(writer, temporary, checksum, extension) {
  const key = writer.objects + '/' + checksum + '.' + extension;
  if (written.has(key)) {
    fs.rmSync(temporary, { force: true });
    return;
  }
  fs.renameSync(temporary, objectPath(writer, checksum, extension));
  written.add(key);
}
function finishFile(writer) {
  const file = writer.file;
  writer.file = undefined;
  const checksum = file.hash.digest('hex');
  try {
    fs.fchownSync(file.fd, file.uid, file.gid);
    fs.fchmodSync(file.fd, file.mode & 0o7777);
    setXattrs(file.fd, undefined, file.x);
    fs.futimesSync(file.fd, Date.now() / 1000, 0);
  } finally {
    fs.closeSync(file.fd);
  }
  place(writer, file.path, checksum, 'file');
  return checksum;
}
function writeAll(fd, bytes) {
  let offset = 0;
  while (offset < bytes.length) offset += fs.writeSync(fd, bytes, offset, bytes.length - offset);
}
function dropFile(writer) {
  const file = writer.file;
  writer.file = undefined;
  if (!file) return;
  try { fs.closeSync(file.fd); } catch {}
  fs.rmSync(file.path, { force: true });
}
function run(writer, batch, sums) {
  const data = Buffer.from(batch.data.buffer, batch.data.byteOffset, batch.data.byteLength);
  for (const op of batch.ops) {
    const bytes = data.subarray(op.o, op.o + op.n);
    if (op.k === 0) {
      reserve(writer, op.size);
      const hash = crypto.createHash('sha256');
      hash.update(bytes);
      const path = temporaryPath(writer);
      writer.file = { hash, path, fd: fs.openSync(path, 'wx', 0o600), uid: op.uid, gid: op.gid, mode: op.mode, x: op.x, remaining: op.size };
      if (op.size === 0) sums.push(finishFile(writer));
    } else if (op.k === 1) {
      const file = writer.file;
      if (!file || bytes.length > file.remaining) throw new Error('file data without a file');
      file.hash.update(bytes);
      writeAll(file.fd, bytes);
      file.remaining -= bytes.length;
      if (file.remaining === 0) sums.push(finishFile(writer));
    } else if (op.k === 2) {
      const checksum = crypto.createHash('sha256').update(bytes).digest('hex');
      sums.push(checksum);
      const key = writer.objects + '/' + checksum + '.file';
      if (written.has(key)) continue;
      const path = temporaryPath(writer);
      fs.symlinkSync(Buffer.from(op.t, 'latin1'), path);
      try {
        fs.lchownSync(path, op.uid, op.gid);
        setXattrs(-1, path, op.x);
      } catch (error) {
        fs.rmSync(path, { force: true });
        throw error;
      }
      place(writer, path, checksum, 'file');
    } else if (op.k === 3) {
      const key = writer.objects + '/' + op.c + '.' + op.e;
      if (written.has(key)) continue;
      const path = temporaryPath(writer);
      const fd = fs.openSync(path, 'wx', 0o644);
      try {
        writeAll(fd, bytes);
        fs.fchmodSync(fd, 0o644);
      } finally {
        fs.closeSync(fd);
      }
      place(writer, path, op.c, op.e);
    }
  }
}
parentPort.on('message', (message) => {
  if (message.t === 'open') {
    const writer = { id: message.w, objects: message.objects, tmp: message.tmp, file: undefined, failed: false };
    try {
      if (message.percent > 0) {
        const stats = fs.statfsSync(message.tmp);
        const reserved = Math.floor((stats.blocks * message.percent) / 100);
        const free = message.root ? stats.bfree : stats.bavail;
        writer.percent = message.percent;
        writer.blockSize = stats.bsize;
        writer.maxBlocks = free > reserved ? free - reserved : 0;
      }
      writers.set(message.w, writer);
      parentPort.postMessage({ id: message.id, sums: [] });
    } catch (error) {
      parentPort.postMessage({ id: message.id, sums: [], failure: { message: String(error && error.message), code: error && error.code } });
    }
    return;
  }
  const writer = writers.get(message.w);
  if (message.t === 'close') {
    if (writer) dropFile(writer);
    writers.delete(message.w);
    parentPort.postMessage({ id: message.id, sums: [] });
    return;
  }
  const sums = [];
  let failure;
  if (!writer || writer.failed) {
    failure = { message: 'the object writer failed before' };
  } else {
    try {
      run(writer, message, sums);
    } catch (error) {
      writer.failed = true;
      dropFile(writer);
      failure = { message: String(error && error.message), code: error && error.code };
    }
  }
  const buffer = message.data.buffer;
  parentPort.postMessage({ id: message.id, sums, failure, buffer }, [buffer]);
});
`;

type Callback = (reply: BatchReply | Error) => void;

let shared: { worker: Worker; pending: Map<number, Callback> } | undefined;
let nextMessageId = 0;
let nextWriterId = 0;

function workerHandle(): { worker: Worker; pending: Map<number, Callback> } {
  if (shared) return shared;
  const worker = new Worker(workerSource, {
    eval: true,
    execArgv: [],
    workerData: { koffi: createRequire(import.meta.url).resolve('koffi') },
    resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 32 },
  });
  const handle = { worker, pending: new Map<number, Callback>() };
  const failAll = (error: Error): void => {
    if (shared === handle) shared = undefined;
    for (const callback of handle.pending.values()) callback(error);
    handle.pending.clear();
  };
  worker.on('message', (reply: BatchReply) => {
    if (reply.buffer && reply.buffer.byteLength === batchBytes && freeBuffers.length < keptBuffers) {
      freeBuffers.push(reply.buffer);
    }
    const callback = handle.pending.get(reply.id);
    handle.pending.delete(reply.id);
    if (handle.pending.size === 0) worker.unref();
    callback?.(reply);
  });
  worker.on('error', failAll);
  worker.on('exit', (code) => failAll(new Error(`the object-writing worker thread exited (code ${code})`)));
  worker.unref();
  shared = handle;
  return handle;
}

function send(message: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<BatchReply> {
  const handle = workerHandle();
  const id = nextMessageId++;
  return new Promise((resolve, reject) => {
    handle.pending.set(id, (reply) => (reply instanceof Error ? reject(reply) : resolve(reply)));
    handle.worker.ref();
    handle.worker.postMessage({ ...message, id }, transfer);
  });
}

/** Values copied into buffers of their own (structured cloning a view copies its whole buffer). */
function ownCopies(xattrs: Array<[string, Uint8Array]>): Array<[string, Uint8Array]> {
  return xattrs.map(([name, value]) => [name, Uint8Array.from(value)]);
}

/** Where to write and how much may be written (see the module's comment). */
export interface ObjectWriterOptions {
  /** The repository's `objects/` and `tmp/` directories (on one file system). */
  objects: string;
  tmp: string;
  /** `min-free-space-percent` (0: no reserve). */
  freeSpacePercent: number;
}

/** An error the worker reported: `code` as the system gave it (`ENOSPC`…). */
export class ObjectWriteError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/**
 * One writer's stream of operations (one layer stream). Content objects' checksums come back in the
 * order the objects were given: `file`/`symlink` take a callback called with it. Failures surface at
 * the next call or at `drain`.
 */
export class ObjectWriter {
  private readonly id = nextWriterId++;
  private ops: Operation[] = [];
  private buffer: Uint8Array | undefined;
  private bytes = 0;
  private inFlight = 0;
  private batches = 0;
  private failure: { error: Error } | undefined;
  private waiters: Array<() => void> = [];
  private readonly expecting: Array<(checksum: string) => void> = [];
  private readonly opened: Promise<void>;
  private closed = false;

  constructor(options: ObjectWriterOptions) {
    this.opened = this.track(
      send({
        t: 'open',
        w: this.id,
        objects: options.objects,
        tmp: options.tmp,
        percent: options.freeSpacePercent,
        root: process.getuid?.() === 0,
      }),
      0,
    );
    this.opened.catch(() => undefined);
  }

  get failed(): Error | undefined {
    return this.failure?.error;
  }

  /** Queues `op` with `bytes` (copied into the batch's buffer; a header or metadata fits in one). */
  private add(op: Omit<Operation, 'o' | 'n'>, bytes: Uint8Array): void {
    if (this.failure) throw this.failure.error;
    if (this.bytes + bytes.byteLength > batchBytes) this.flush();
    if (bytes.byteLength > batchBytes) {
      // A metadata object larger than a batch: a buffer of its own.
      this.ops.push({ ...op, o: 0, n: bytes.byteLength });
      this.buffer = Uint8Array.from(bytes);
      this.bytes = bytes.byteLength;
      this.flush();
      return;
    }
    this.buffer ??= new Uint8Array(freeBuffers.pop() ?? new ArrayBuffer(batchBytes));
    this.buffer.set(bytes, this.bytes);
    this.ops.push({ ...op, o: this.bytes, n: bytes.byteLength });
    this.bytes += bytes.byteLength;
    if (this.ops.length >= batchOperations || this.bytes >= batchBytes) this.flush();
  }

  /** File bytes, split across batches where they do not fit. */
  private addData(chunk: Uint8Array): void {
    let offset = 0;
    while (offset < chunk.byteLength) {
      if (this.bytes >= batchBytes) this.flush();
      const size = Math.min(chunk.byteLength - offset, batchBytes - this.bytes);
      this.add({ k: Kind.Data }, chunk.subarray(offset, offset + size));
      offset += size;
    }
  }

  /** A regular file: `header` (see `serializeFileHeader`), then `size` bytes through `data`. */
  file(
    header: Uint8Array,
    fields: { uid: number; gid: number; mode: number; size: number; xattrs: Array<[string, Uint8Array]> },
    onChecksum: (checksum: string) => void,
  ): void {
    this.expecting.push(onChecksum);
    this.add(
      {
        k: Kind.File,
        uid: fields.uid,
        gid: fields.gid,
        mode: fields.mode,
        size: fields.size,
        ...(fields.xattrs.length > 0 ? { x: ownCopies(fields.xattrs) } : {}),
      },
      header,
    );
  }

  /** The next bytes of the current file; await the promise, when one is returned, before going on. */
  data(chunk: Uint8Array): Promise<void> | undefined {
    this.addData(chunk);
    return this.room();
  }

  /** A promise to await while too many batches are in flight, else undefined (no promise per call). */
  room(): Promise<void> | undefined {
    return this.inFlight > maxBytesInFlight ? this.waitForRoom() : undefined;
  }

  symlink(
    header: Uint8Array,
    fields: { uid: number; gid: number; target: string; xattrs: Array<[string, Uint8Array]> },
    onChecksum: (checksum: string) => void,
  ): void {
    this.expecting.push(onChecksum);
    this.add(
      {
        k: Kind.Symlink,
        uid: fields.uid,
        gid: fields.gid,
        t: fields.target,
        ...(fields.xattrs.length > 0 ? { x: ownCopies(fields.xattrs) } : {}),
      },
      header,
    );
  }

  metadata(checksum: string, extension: 'dirtree' | 'dirmeta', bytes: Uint8Array): void {
    this.add({ k: Kind.Metadata, c: checksum, e: extension }, bytes);
  }

  /** Sends what is queued. */
  flush(): void {
    if (this.ops.length === 0 || this.failure || this.closed) return;
    const buffer = this.buffer!;
    const data = buffer.subarray(0, this.bytes);
    const ops = this.ops;
    this.ops = [];
    this.buffer = undefined;
    this.bytes = 0;
    // Counted as the whole buffer: what the batches in flight hold, however full.
    this.track(
      send({ t: 'batch', w: this.id, ops, data }, [buffer.buffer as ArrayBuffer]),
      buffer.byteLength,
    ).catch(() => undefined);
  }

  private track(reply: Promise<BatchReply>, size: number): Promise<void> {
    this.inFlight += size;
    this.batches++;
    return reply.then(
      (result) => {
        this.settled(size);
        if (result.failure) {
          this.failure ??= { error: new ObjectWriteError(result.failure.message, result.failure.code) };
          throw this.failure.error;
        }
        for (const sum of result.sums) this.expecting.shift()?.(sum);
      },
      (error: Error) => {
        this.settled(size);
        this.failure ??= { error };
        throw error;
      },
    );
  }

  private settled(size: number): void {
    this.inFlight -= size;
    this.batches--;
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  private async waitForRoom(): Promise<void> {
    while (this.inFlight > maxBytesInFlight && this.batches > 0 && !this.failure) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.failure) throw this.failure.error;
  }

  /** Sends what is queued and waits until everything sent is written; throws the first failure. */
  async drain(): Promise<void> {
    await this.opened;
    this.flush();
    while (this.batches > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
    if (this.failure) throw this.failure.error;
  }

  /** Stops: what is queued is dropped, a file being written is removed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ops = [];
    this.buffer = undefined;
    this.bytes = 0;
    while (this.batches > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
    await send({ t: 'close', w: this.id }).catch(() => undefined);
  }
}
