/**
 * Writes small new files on one worker thread, in batches: each file is open, write, (fchown), (fchmod),
 * futimes and close, done there with synchronous calls, one message per batch of files each way.
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
import { Worker } from 'node:worker_threads';

/** One file to create: nothing is at `path` (the caller made sure), its directory exists. */
export interface FileJob {
  /** The file's full path: bytes, or a Latin-1 string of them (one character per byte). */
  path: Uint8Array | string;
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
 * A batch as sent: paths and contents packed into one buffer (transferred, not copied; structured
 * cloning a view would copy its whole underlying buffer), `numbers` holding per job: path offset, path
 * length, content offset, content length, openMode, chmodMode, uid, gid, atime, mtime.
 */
interface Batch {
  id: number;
  data: Uint8Array;
  numbers: Float64Array;
  ignoreChownErrors: boolean;
}

const numbersPerJob = 10;

interface BatchResult {
  id: number;
  /** The first failure of the batch: index of the job, message and errno code. */
  failure?: { index: number; message: string; code?: string };
}

// Runs in the worker; plain JavaScript (the CLI bundle has no separate worker file).
const workerSource = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
parentPort.on('message', (batch) => {
  let failure;
  const data = Buffer.from(batch.data.buffer, batch.data.byteOffset, batch.data.byteLength);
  const n = batch.numbers;
  const count = n.length / 10;
  for (let index = 0; index < count && failure === undefined; index++) {
    const at = index * 10;
    let fd = -1;
    try {
      fd = fs.openSync(data.subarray(n[at], n[at] + n[at + 1]), flags, n[at + 4]);
      const content = data.subarray(n[at + 2], n[at + 2] + n[at + 3]);
      let offset = 0;
      while (offset < content.length) offset += fs.writeSync(fd, content, offset, content.length - offset);
      if (n[at + 6] !== -1) {
        try {
          fs.fchownSync(fd, n[at + 6], n[at + 7]);
        } catch (error) {
          if (!batch.ignoreChownErrors) throw error;
        }
      }
      if (n[at + 5] !== -1) fs.fchmodSync(fd, n[at + 5]);
      fs.futimesSync(fd, n[at + 8], n[at + 9]);
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
  parentPort.postMessage({ id: batch.id, failure });
});
`;

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
    this.queuedBytes += job.content.byteLength + job.path.length + 64;
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
  for (const job of jobs) size += job.path.length + job.content.byteLength;
  // Its own memory (not a slice of Node's pool): the buffer is transferred to the worker.
  const data = Buffer.allocUnsafeSlow(size);
  const numbers = new Float64Array(jobs.length * numbersPerJob);
  let offset = 0;
  for (let index = 0; index < jobs.length; index++) {
    const job = jobs[index] as FileJob;
    const at = index * numbersPerJob;
    numbers[at] = offset;
    const path = job.path;
    const pathLength = typeof path === 'string' ? data.write(path, offset, 'latin1') : path.byteLength;
    if (typeof path !== 'string') data.set(path, offset);
    numbers[at + 1] = pathLength;
    offset += pathLength;
    numbers[at + 2] = offset;
    numbers[at + 3] = job.content.byteLength;
    data.set(job.content, offset);
    offset += job.content.byteLength;
    numbers[at + 4] = job.openMode;
    numbers[at + 5] = job.chmodMode;
    numbers[at + 6] = job.uid;
    numbers[at + 7] = job.gid;
    numbers[at + 8] = job.atime;
    numbers[at + 9] = job.mtime;
  }
  return { id, data, numbers, ignoreChownErrors };
}
