/**
 * containers/storage lock files: `storage.lock`, `<driver>-layers/layers.lock`,
 * `<driver>-images/images.lock`, `<runroot>/<driver>-layers/mountpoints.lock`.
 *
 * containers/storage locks a file with a POSIX record lock over the whole file (`fcntl(F_SETLKW)` with
 * `F_RDLCK` / `F_WRLCK`, start 0, length 0) and, before each change of the data the lock guards, writes a
 * fresh 64-byte "last writer" token at offset 0 (8 bytes little-endian nanosecond time, 8 bytes counter,
 * 4 bytes PID, 44 random bytes). Readers compare the token with the one they saw last to know whether to
 * reload. Gantry takes the same locks (through libc's `fcntl`, called with koffi, since Node has no
 * binding for record locks) and writes the same tokens, so podman, buildah and skopeo wait for Gantry
 * and see its changes, and the other way round.
 *
 * Record locks belong to a process, not a file descriptor: two holders in one process do not exclude
 * each other, and closing any descriptor of the file drops the process's lock. So within this process
 * each lock path has one async mutex and one descriptor, opened when the lock is taken and closed when
 * it is released. A lock another process holds is waited for as containers/storage waits, with a
 * blocking `F_SETLKW`, made on a koffi worker thread (`.async`) so that the event loop goes on; the
 * kernel wakes the wait when the lock is released. An aborted wait rejects at once; the `F_SETLKW` still
 * pending keeps this path's mutex and descriptor until it returns, and a lock it then gets is released
 * straight away. (koffi has no asynchronous call of a variadic function, so `fcntl` is declared with a
 * fixed third argument, which Linux's x86-64 and arm64 calling conventions pass the same way; on other
 * architectures the wait polls `F_SETLK`.) A process that dies releases its locks in the kernel, so a
 * lock is never stale.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { abortError, ErrorCodes, GantryError } from '@gantry/core/transport';

/** Size of containers/storage's last-writer token. */
export const lastWriterTokenSize = 64;

interface FlockRequest {
  l_type: number;
  l_whence: number;
  l_start: number;
  l_len: number;
  l_pid: number;
}

interface Libc {
  /** fcntl(fd, cmd, struct flock *) on this thread. */
  fcntl: (fd: number, command: number, lock: FlockRequest) => number;
  /** fcntl(fd, cmd, struct flock *) on a worker thread; undefined where not supported (see above). */
  fcntlOnWorker: ((fd: number, command: number, lock: FlockRequest) => Promise<number>) | undefined;
  errno: () => number;
}

// Linux values (the same on x86_64, arm64, ppc64le, s390x, riscv64).
const F_SETLK = 6;
const F_SETLKW = 7;
const F_RDLCK = 0;
const F_WRLCK = 1;
const F_UNLCK = 2;
const EACCES = 13;
const EAGAIN = 11;
const EINTR = 4;

let libc: Promise<Libc> | undefined;

function loadLibc(): Promise<Libc> {
  libc ??= bindLibc();
  return libc;
}

async function bindLibc(): Promise<Libc> {
  // Loaded with require beside the CLI bundle (native code cannot be bundled), as layer-tree's native.ts.
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  const library = koffi.load('libc.so.6');
  // Anonymous: koffi's type names are process-wide, and this module may be evaluated more than once.
  const flock = koffi.struct({
    l_type: 'short',
    l_whence: 'short',
    l_start: 'int64_t',
    l_len: 'int64_t',
    l_pid: 'int',
  });
  const fcntl = library.func('int fcntl(int fd, int cmd, ...)');
  const fixedFcntl =
    process.arch === 'x64' || process.arch === 'arm64'
      ? library.func('fcntl', 'int', ['int', 'int', koffi.pointer(flock)])
      : undefined;
  return {
    fcntl: (fd, command, lock) => fcntl(fd, command, koffi.pointer(flock), lock) as number,
    fcntlOnWorker: fixedFcntl
      ? (fd, command, lock) =>
          new Promise<number>((resolve, reject) => {
            fixedFcntl.async(fd, command, lock, (error: unknown, result: number) =>
              error ? reject(error) : resolve(result),
            );
          })
      : undefined,
    errno: () => koffi.errno(),
  };
}

/** A new last-writer token, laid out as containers/storage lays out its own. */
export function newLastWriterToken(): Buffer {
  const token = Buffer.alloc(lastWriterTokenSize);
  token.writeBigUInt64LE(BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n), 0);
  token.writeBigUInt64LE(BigInt(++tokenCounter), 8);
  token.writeUInt32LE(process.pid >>> 0, 16);
  randomBytes(lastWriterTokenSize - 20).copy(token, 20);
  return token;
}
let tokenCounter = 0;

/** A simple FIFO async mutex. */
class AsyncMutex {
  private tail: Promise<void> = Promise.resolve();

  async acquire(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((resolve) => {
      release = resolve;
    });
    const previous = this.tail;
    this.tail = previous.then(() => next);
    await previous;
    return release;
  }
}

const mutexes = new Map<string, AsyncMutex>();

function mutexFor(path: string): AsyncMutex {
  let mutex = mutexes.get(path);
  if (!mutex) {
    mutex = new AsyncMutex();
    mutexes.set(path, mutex);
  }
  return mutex;
}

export interface LockOptions {
  signal?: AbortSignal;
  /** Called once when the lock is held by another process and the caller starts to wait. */
  onWait?: () => void;
}

/** A held lock on a containers/storage lock file. */
export interface HeldLock {
  readonly path: string;
  readonly exclusive: boolean;
  /** The last-writer token in the file now ('' for an empty file). */
  lastWriter(): string;
  /** Writes a new last-writer token (exclusive locks only), telling other processes to reload. */
  recordWrite(): string;
  release(): void;
}

/**
 * Takes the lock on `path` (created with its directory when missing, mode 0644 as containers/storage
 * creates it): shared (`F_RDLCK`) or exclusive (`F_WRLCK`). Within this process holders are serialised.
 */
export async function acquireLock(
  path: string,
  exclusive: boolean,
  options: LockOptions = {},
): Promise<HeldLock> {
  const { fcntl, fcntlOnWorker, errno } = await loadLibc();
  const releaseMutex = await mutexFor(path).acquire();
  let fd = -1;
  /** Set when a blocking wait outlives an abort: it then owns the descriptor and the mutex. */
  let abandonedWait = false;
  try {
    if (options.signal?.aborted) throw abortError(options.signal);
    try {
      fd = openSync(path, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      fd = openSync(path, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
    }
    const request = { l_type: exclusive ? F_WRLCK : F_RDLCK, l_whence: 0, l_start: 0, l_len: 0, l_pid: 0 };
    let waited = false;
    let pause = 5;
    for (;;) {
      if (fcntl(fd, F_SETLK, request) === 0) break;
      const code = errno();
      if (code !== EAGAIN && code !== EACCES && code !== EINTR) {
        throw new GantryError(ErrorCodes.Internal, `locking ${path}: fcntl failed with errno ${code}`);
      }
      if (!waited) {
        waited = true;
        options.onWait?.();
      }
      if (options.signal?.aborted) throw abortError(options.signal);
      if (fcntlOnWorker !== undefined) {
        const waitingFd = fd;
        const wait = fcntlOnWorker(waitingFd, F_SETLKW, request);
        const outcome = await abortable(wait, options.signal);
        if (outcome === 'aborted') {
          abandonedWait = true;
          // The wait still blocks a worker thread: when it returns, drop what it got, then let go.
          void wait
            .then(
              (result) => {
                if (result === 0) fcntl(waitingFd, F_SETLK, { ...request, l_type: F_UNLCK });
              },
              () => undefined,
            )
            .finally(() => {
              closeSync(waitingFd);
              releaseMutex();
            });
          throw abortError(options.signal!);
        }
        if (outcome.value === 0) break;
        // Interrupted (EINTR) or refused (EDEADLK): go round again, with F_SETLK first.
      } else {
        await delay(pause);
        pause = Math.min(pause * 2, 50);
      }
    }
  } catch (error) {
    if (!abandonedWait) {
      if (fd >= 0) closeSync(fd);
      releaseMutex();
    }
    throw error;
  }
  const heldFd = fd;
  let released = false;
  return {
    path,
    exclusive,
    lastWriter(): string {
      const buffer = Buffer.alloc(lastWriterTokenSize);
      const count = readSync(heldFd, buffer, 0, lastWriterTokenSize, 0);
      return buffer.subarray(0, count).toString('hex');
    },
    recordWrite(): string {
      if (!exclusive) throw new GantryError(ErrorCodes.Internal, `recordWrite on a shared lock of ${path}`);
      const token = newLastWriterToken();
      const written = writeSync(heldFd, token, 0, token.length, 0);
      if (written !== token.length) {
        throw new GantryError(ErrorCodes.Internal, `writing the last-writer token of ${path}: short write`);
      }
      return token.toString('hex');
    },
    release(): void {
      if (released) return;
      released = true;
      try {
        fcntl(heldFd, F_SETLK, { l_type: F_UNLCK, l_whence: 0, l_start: 0, l_len: 0, l_pid: 0 });
      } finally {
        closeSync(heldFd);
        releaseMutex();
      }
    },
  };
}

/** `promise`'s outcome, or 'aborted' as soon as `signal` fires (the promise is left running). */
async function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
): Promise<{ value: T } | 'aborted'> {
  if (signal === undefined) return { value: await promise };
  if (signal.aborted) return 'aborted';
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<'aborted'>((resolve) => {
    onAbort = () => resolve('aborted');
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([promise.then((value) => ({ value })), aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort!);
  }
}

/** Runs `action` with the lock held, releasing it afterwards. */
export async function withLock<T>(
  path: string,
  exclusive: boolean,
  action: (lock: HeldLock) => Promise<T> | T,
  options: LockOptions = {},
): Promise<T> {
  const lock = await acquireLock(path, exclusive, options);
  try {
    return await action(lock);
  } finally {
    lock.release();
  }
}
