/**
 * Writes small new files on one worker thread, in batches: each file is openat (by name, in its directory
 * opened once per run of files there), write, (fchown), (fchmod), futimens and close, libc's calls made
 * there through koffi (node:fs with full paths where koffi cannot be loaded), one message per batch of
 * files each way.
 *
 * Why a worker and not libuv's thread pool: each asynchronous `fs` call is one trip through the pool
 * (a queue under a mutex, a wake-up of a pool thread, an eventfd write and an epoll wake-up of the main
 * thread): five trips per file. For a layer of 20,000 small files that was ~100,000 futex calls with the
 * pool threads fighting over the queue's mutex, and seconds of CPU on a loaded machine. Here the main
 * thread keeps reading the tar (decompression, sha256, CRC-64, tar-split) while the worker makes the
 * system calls, and the cost per file is the system calls themselves.
 *
 * One worker serves the whole process (started on first use, or ahead by `startFileWriter`: a Node.js
 * environment on its own thread: 80–115 ms of CPU, measured at a load of ~10; it does not keep the
 * process alive while idle). Memory is bounded: at most `maxBytesInFlight` (4 MiB) of file contents are
 * queued or being written.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** One file to create: nothing is at `directory/name` (the caller made sure), its directory exists. */
export interface FileJob {
  /**
   * The full path of the file's directory: bytes, or a Latin-1 string of them (one character per byte).
   * Consecutive jobs in the same directory should pass the same string: the directory is then opened once
   * for all of them (compared by value, identity first).
   */
  directory: Uint8Array | string;
  /** The file's name in that directory (no slash), bytes or a Latin-1 string. */
  name: Uint8Array | string;
  content: Uint8Array;
  /** Mode given to open (permission bits; the umask applies). */
  openMode: number;
  /** Mode set with fchmod afterwards (set-id and sticky bits too), or -1 for none. */
  chmodMode: number;
  /** Owner set with fchown, or -1 for none. */
  uid: number;
  gid: number;
  /** Access and modification times, seconds. */
  atime: number;
  mtime: number;
}

/**
 * A batch as sent: directory paths, names and contents packed into one buffer (transferred, not copied;
 * structured cloning a view would copy its whole underlying buffer), paths and names NUL-terminated, a
 * directory's path only where it differs from the previous job's; `numbers` holding per job: directory
 * offset, directory length, name offset, name length, content offset, content length, openMode,
 * chmodMode, uid, gid, atime, mtime.
 */
interface Batch {
  id: number;
  data: Uint8Array;
  numbers: Float64Array;
  ignoreChownErrors: boolean;
}

const numbersPerJob = 12;

interface BatchResult {
  id: number;
  /** The first failure of the batch: index of the job, message and errno code. */
  failure?: { index: number; message: string; code?: string };
  /** The answer to a `mode` query: whether the worker calls libc (else node:fs). */
  libc?: boolean;
}

// Runs in the worker; plain JavaScript (the CLI bundle has no separate worker file).
//
// With koffi (`workerData.koffi`, its resolved path): libc's open (the directory, O_PATH, once per run of
// jobs in it), openat (the file, by its name in that directory: no path walk per file), write, fchown,
// fchmod, futimens and close, called directly. Per file that is the four system calls and ~1 µs of FFI
// each, against Node's fs binding (a path converted and walked, a request set up, errors checked through
// a context object). Without koffi (not loadable, another architecture): node:fs with full paths. Either
// way the file is created with O_CREAT|O_EXCL|O_NOFOLLOW (never follows or replaces anything), and with
// koffi its directory is opened with O_DIRECTORY|O_NOFOLLOW (the caller's directory itself, not a link).
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const util = require('node:util');
const errors = util.getSystemErrorMap();
const failureOf = (errno, call, path) => {
  const known = errors.get(-errno);
  const code = known ? known[0] : 'E' + errno;
  return { code, message: code + ': ' + (known ? known[1] : 'error ' + errno) + ', ' + call + " '" + path + "'" };
};
const pathText = (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
let libc;
try {
  if (workerData && workerData.koffi && process.platform === 'linux' && (process.arch === 'x64' || process.arch === 'arm64')) {
    const koffi = require(workerData.koffi);
    const lib = koffi.load('libc.so.6');
    libc = {
      errno: koffi.errno,
      open: lib.func('int open(const void *path, int flags, uint32_t mode)'),
      openat: lib.func('int openat(int dirfd, const void *path, int flags, uint32_t mode)'),
      write: lib.func('intptr_t write(int fd, const void *buf, size_t count)'),
      fchown: lib.func('int fchown(int fd, uint32_t uid, uint32_t gid)'),
      fchmod: lib.func('int fchmod(int fd, uint32_t mode)'),
      futimens: lib.func('int futimens(int fd, const void *times)'),
      close: lib.func('int close(int fd)'),
    };
  }
} catch {
  libc = undefined;
}
// Linux's generic values (x86-64 and arm64 share them); O_DIRECTORY and O_NOFOLLOW differ, so from Node.
const O_PATH = 0o10000000;
const O_CLOEXEC = 0o2000000;
const c = fs.constants;
const fileFlags = c.O_WRONLY | c.O_CREAT | c.O_EXCL | c.O_NOFOLLOW;
const directoryFlags = O_PATH | c.O_DIRECTORY | c.O_NOFOLLOW | O_CLOEXEC;
// Two timespecs (atime, mtime) for futimens, 64-bit seconds and nanoseconds, little-endian halves.
const times = new ArrayBuffer(32);
const timesLow = new Uint32Array(times);
const timesHigh = new Int32Array(times);
// As libuv converts seconds to a timespec (microseconds kept), so both paths set the same times.
const setTime = (at, seconds) => {
  let whole = Math.trunc(seconds);
  let nanoseconds = Math.trunc((seconds - whole) * 1e9);
  nanoseconds -= nanoseconds % 1000;
  if (nanoseconds < 0) {
    nanoseconds += 1e9;
    whole -= 1;
  }
  timesLow[at] = whole >>> 0;
  timesHigh[at + 1] = Math.floor(whole / 4294967296);
  timesLow[at + 2] = nanoseconds;
  timesHigh[at + 3] = 0;
};
const timesView = new Uint8Array(times);

const jobPath = (data, n, at) =>
  pathText(data.subarray(n[at], n[at] + n[at + 1])) + '/' + pathText(data.subarray(n[at + 2], n[at + 2] + n[at + 3]));

function writeNative(batch, data, n, count) {
  let failure;
  let directory = -1;
  let directoryFd = -1;
  for (let index = 0; index < count && failure === undefined; index++) {
    const at = index * ${numbersPerJob};
    if (n[at] !== directory) {
      if (directoryFd !== -1) libc.close(directoryFd);
      directory = n[at];
      directoryFd = libc.open(data.subarray(directory), directoryFlags, 0);
      if (directoryFd < 0) {
        failure = { index, ...failureOf(libc.errno(), 'open', pathText(data.subarray(directory, directory + n[at + 1]))) };
        break;
      }
    }
    const fd = libc.openat(directoryFd, data.subarray(n[at + 2]), fileFlags | O_CLOEXEC, n[at + 6]);
    if (fd < 0) {
      failure = { index, ...failureOf(libc.errno(), 'open', jobPath(data, n, at)) };
      break;
    }
    let offset = n[at + 4];
    const end = offset + n[at + 5];
    while (offset < end && failure === undefined) {
      const written = Number(libc.write(fd, data.subarray(offset, end), end - offset));
      if (written < 0) failure = { index, ...failureOf(libc.errno(), 'write', jobPath(data, n, at)) };
      else offset += written;
    }
    if (failure === undefined && n[at + 8] !== -1 && libc.fchown(fd, n[at + 8], n[at + 9]) !== 0) {
      if (!batch.ignoreChownErrors) failure = { index, ...failureOf(libc.errno(), 'fchown', jobPath(data, n, at)) };
    }
    if (failure === undefined && n[at + 7] !== -1 && libc.fchmod(fd, n[at + 7]) !== 0)
      failure = { index, ...failureOf(libc.errno(), 'fchmod', jobPath(data, n, at)) };
    if (failure === undefined) {
      setTime(0, n[at + 10]);
      setTime(4, n[at + 11]);
      if (libc.futimens(fd, timesView) !== 0) failure = { index, ...failureOf(libc.errno(), 'futime', jobPath(data, n, at)) };
    }
    if (libc.close(fd) !== 0) failure ??= { index, ...failureOf(libc.errno(), 'close', jobPath(data, n, at)) };
  }
  if (directoryFd !== -1) libc.close(directoryFd);
  return failure;
}

function writeWithFs(batch, data, n, count) {
  let failure;
  for (let index = 0; index < count && failure === undefined; index++) {
    const at = index * ${numbersPerJob};
    let fd = -1;
    try {
      const path = Buffer.concat([
        data.subarray(n[at], n[at] + n[at + 1]),
        Buffer.from('/'),
        data.subarray(n[at + 2], n[at + 2] + n[at + 3]),
      ]);
      fd = fs.openSync(path, fileFlags, n[at + 6]);
      const content = data.subarray(n[at + 4], n[at + 4] + n[at + 5]);
      let offset = 0;
      while (offset < content.length) offset += fs.writeSync(fd, content, offset, content.length - offset);
      if (n[at + 8] !== -1) {
        try {
          fs.fchownSync(fd, n[at + 8], n[at + 9]);
        } catch (error) {
          if (!batch.ignoreChownErrors) throw error;
        }
      }
      if (n[at + 7] !== -1) fs.fchmodSync(fd, n[at + 7]);
      fs.futimesSync(fd, n[at + 10], n[at + 11]);
    } catch (error) {
      failure = { index, message: String(error && error.message), code: error && error.code };
    } finally {
      if (fd !== -1) {
        try {
          fs.closeSync(fd);
        } catch (error) {
          failure ??= { index, message: String(error && error.message), code: error && error.code };
        }
      }
    }
  }
  return failure;
}

parentPort.on('message', (batch) => {
  if (batch.query === 'mode') {
    parentPort.postMessage({ id: batch.id, libc: libc !== undefined });
    return;
  }
  const data = Buffer.from(batch.data.buffer, batch.data.byteOffset, batch.data.byteLength);
  const n = batch.numbers;
  const count = n.length / ${numbersPerJob};
  const failure = (libc ? writeNative : writeWithFs)(batch, data, n, count);
  parentPort.postMessage({ id: batch.id, failure });
});
`;

/** koffi's resolved path for the worker, or undefined (the worker then uses node:fs). */
function koffiPath(): string | undefined {
  if (process.env.GANTRY_FILE_WRITER_FS === '1') return undefined;
  try {
    return createRequire(import.meta.url).resolve('koffi');
  } catch {
    return undefined;
  }
}

type BatchCallback = (result: BatchResult | Error) => void;

let sharedWorker: { worker: Worker; pending: Map<number, BatchCallback> } | undefined;
let nextBatchId = 0;

function workerHandle(): { worker: Worker; pending: Map<number, BatchCallback> } {
  if (sharedWorker) return sharedWorker;
  // Its own small heap (not the process's V8 flags): each batch's buffer is garbage once written, and a
  // small young generation frees it at once instead of letting batches pile up to a large heap's limit.
  const worker = new Worker(workerSource, {
    eval: true,
    execArgv: [],
    workerData: { koffi: koffiPath() },
    resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 16 },
  });
  const handle = { worker, pending: new Map<number, BatchCallback>() };
  const failAll = (error: Error): void => {
    if (sharedWorker === handle) sharedWorker = undefined;
    for (const callback of handle.pending.values()) callback(error);
    handle.pending.clear();
  };
  worker.on('message', (result: BatchResult) => {
    const callback = handle.pending.get(result.id);
    handle.pending.delete(result.id);
    if (handle.pending.size === 0) worker.unref();
    callback?.(result);
  });
  worker.on('error', failAll);
  worker.on('exit', (code) => failAll(new Error(`the file-writing worker thread exited (code ${code})`)));
  worker.unref();
  sharedWorker = handle;
  return handle;
}

/**
 * Starts the shared worker ahead of its first batch (nothing happens when it runs already; it does not
 * keep the process alive while idle). Starting a worker is a Node.js environment set up on its own
 * thread (tens of milliseconds of CPU): a caller that knows small files are coming and has a wait to
 * spend first (a layer's record being synced) starts it then, so that the first batch does not wait.
 */
export function startFileWriter(): void {
  workerHandle();
}

/** Whether the shared worker is running (for tests). */
export function fileWriterRunning(): boolean {
  return sharedWorker !== undefined;
}

/** How the shared worker (started if need be) makes its calls: `libc` through koffi, or `fs` (for tests). */
export function fileWriterMode(): Promise<'libc' | 'fs'> {
  const handle = workerHandle();
  const id = ++nextBatchId;
  return new Promise((resolve, reject) => {
    handle.pending.set(id, (result) => {
      if (result instanceof Error) reject(result);
      else resolve(result.libc ? 'libc' : 'fs');
    });
    handle.worker.ref();
    handle.worker.postMessage({ id, query: 'mode' });
  });
}

/** Stops the shared worker (the next batch starts a new one; for tests). */
export async function stopFileWriter(): Promise<void> {
  const handle = sharedWorker;
  if (handle === undefined) return;
  sharedWorker = undefined;
  await handle.worker.terminate();
}

/** Writes `FileJob`s in batches on the shared worker; failures surface at `drain` (or the next `add`). */
export class BatchedFileWriter {
  private queued: FileJob[] = [];
  private queuedNames: string[] = [];
  private queuedBytes = 0;
  private bytesInFlight = 0;
  private batchesInFlight = 0;
  private failure: { error: Error } | undefined;
  private readonly waiters: Array<() => void> = [];

  constructor(
    private readonly options: {
      ignoreChownErrors: boolean;
      /** Names a failed entry in the error (the tar entry's name). */
      describeFailure: (entry: string, error: Error) => Error;
      maxFilesPerBatch?: number;
      maxBytesPerBatch?: number;
      maxBytesInFlight?: number;
    },
  ) {}

  /**
   * Queues a file (`entry` names it in errors). Returns undefined when the caller may go on at once, or a
   * promise to await first, while too many bytes are in flight (no promise per file in the common case).
   */
  add(job: FileJob, entry: string): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure.error);
    this.queued.push(job);
    this.queuedNames.push(entry);
    this.queuedBytes += job.content.byteLength + job.name.length + 64;
    if (
      this.queued.length >= (this.options.maxFilesPerBatch ?? 256) ||
      this.queuedBytes >= (this.options.maxBytesPerBatch ?? 1 << 20)
    ) {
      this.send();
    }
    if (this.bytesInFlight > (this.options.maxBytesInFlight ?? 4 << 20) && this.batchesInFlight > 0)
      return this.waitForRoom();
    return undefined;
  }

  private async waitForRoom(): Promise<void> {
    while (this.bytesInFlight > (this.options.maxBytesInFlight ?? 4 << 20) && this.batchesInFlight > 0) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    const failure = this.failure as { error: Error } | undefined;
    if (failure) throw failure.error;
  }

  /** Writes everything queued and waits for it; throws the first failure. */
  async drain(): Promise<void> {
    await this.settle();
    const failure = this.failure as { error: Error } | undefined;
    if (failure) throw failure.error;
  }

  /** Writes everything queued and waits for it, without throwing. */
  async settle(): Promise<void> {
    if (this.queued.length > 0 && !this.failure) this.send();
    this.queued = [];
    this.queuedNames = [];
    this.queuedBytes = 0;
    while (this.batchesInFlight > 0) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private send(): void {
    const jobs = this.queued;
    const names = this.queuedNames;
    const bytes = this.queuedBytes;
    this.queued = [];
    this.queuedNames = [];
    this.queuedBytes = 0;
    const id = ++nextBatchId;
    this.batchesInFlight++;
    this.bytesInFlight += bytes;
    const done: BatchCallback = (result) => {
      this.batchesInFlight--;
      this.bytesInFlight -= bytes;
      if (result instanceof Error) {
        this.failure ??= { error: result };
      } else if (result.failure !== undefined) {
        const cause = Object.assign(new Error(result.failure.message), { code: result.failure.code });
        this.failure ??= {
          error: this.options.describeFailure(names[result.failure.index] ?? '?', cause),
        };
      }
      for (const resolve of this.waiters.splice(0)) resolve();
    };
    try {
      const batch = packBatch(id, jobs, this.options.ignoreChownErrors);
      const handle = workerHandle();
      handle.pending.set(id, done);
      handle.worker.ref();
      handle.worker.postMessage(batch, [
        batch.data.buffer as ArrayBuffer,
        batch.numbers.buffer as ArrayBuffer,
      ]);
    } catch (error) {
      done(error as Error);
    }
  }
}

function packBatch(id: number, jobs: readonly FileJob[], ignoreChownErrors: boolean): Batch {
  let size = 0;
  let previous: Uint8Array | string | undefined;
  for (const job of jobs) {
    if (job.directory !== previous) {
      size += job.directory.length + 1;
      previous = job.directory;
    }
    size += job.name.length + 1 + job.content.byteLength;
  }
  // Its own memory (not a slice of Node's pool): the buffer is transferred to the worker.
  const data = Buffer.allocUnsafeSlow(size);
  const numbers = new Float64Array(jobs.length * numbersPerJob);
  let offset = 0;
  let directoryOffset = 0;
  let directoryLength = 0;
  previous = undefined;
  for (let index = 0; index < jobs.length; index++) {
    const job = jobs[index] as FileJob;
    const at = index * numbersPerJob;
    const directory = job.directory;
    if (directory !== previous && !sameBytes(directory, previous, data, directoryOffset, directoryLength)) {
      directoryOffset = offset;
      directoryLength = putBytes(data, offset, directory);
      offset += directoryLength;
      data[offset++] = 0;
    }
    previous = directory;
    numbers[at] = directoryOffset;
    numbers[at + 1] = directoryLength;
    numbers[at + 2] = offset;
    const nameLength = putBytes(data, offset, job.name);
    numbers[at + 3] = nameLength;
    offset += nameLength;
    data[offset++] = 0;
    numbers[at + 4] = offset;
    numbers[at + 5] = job.content.byteLength;
    data.set(job.content, offset);
    offset += job.content.byteLength;
    numbers[at + 6] = job.openMode;
    numbers[at + 7] = job.chmodMode;
    numbers[at + 8] = job.uid;
    numbers[at + 9] = job.gid;
    numbers[at + 10] = job.atime;
    numbers[at + 11] = job.mtime;
  }
  return { id, data, numbers, ignoreChownErrors };
}

/** Copies `bytes` (a Latin-1 string or bytes) into `data` at `offset`; returns their length. */
function putBytes(data: Buffer, offset: number, bytes: Uint8Array | string): number {
  if (typeof bytes === 'string') return data.write(bytes, offset, 'latin1');
  data.set(bytes, offset);
  return bytes.byteLength;
}

/** Whether `directory` is the bytes already at `data[offset, offset + length)` (`previous` put them). */
function sameBytes(
  directory: Uint8Array | string,
  previous: Uint8Array | string | undefined,
  data: Buffer,
  offset: number,
  length: number,
): boolean {
  if (previous === undefined || directory.length !== length) return false;
  if (typeof directory === 'string') return directory === previous;
  return data.subarray(offset, offset + length).equals(directory);
}
