/**
 * The repository lock libostree itself uses: the file `.lock` at the repository's root, locked whole
 * with an open-file-description record lock (`fcntl(F_OFD_SETLK)`): shared (`F_RDLCK`) while objects are
 * written (every `ostree commit` transaction), exclusive (`F_WRLCK`) while objects are removed
 * (`ostree prune`). libostree gives up on a lock it has waited 30 seconds for.
 *
 * Gantry takes the same lock around its own multi-step operations: a copy into the repository holds it
 * shared from its first object to its last branch (its commits are unreferenced until then, and a prune
 * would remove them), and a delete holds it exclusive while it decides which branches no other image
 * uses and removes them. Node has no binding for record locks, so `fcntl` is called through koffi (a
 * dependency of `@gantry/layer-tree` already), loaded on first use. Waiting polls `F_OFD_SETLK` with a
 * growing pause (at most 100 ms) and stops at once when the signal aborts. Open-file-description locks
 * belong to the descriptor: two holders in one process exclude each other like two processes, and the
 * kernel drops the lock of a process that dies, so a lock is never stale.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { abortError, ErrorCodes, GantryError } from '@gantry/core/transport';

// Linux values (the same on every architecture Node runs on).
const F_OFD_SETLK = 37;
const F_RDLCK = 0;
const F_WRLCK = 1;
const F_UNLCK = 2;
const EINTR = 4;
const EAGAIN = 11;
const EACCES = 13;

interface LockRequest {
  l_type: number;
  l_whence: number;
  l_start: number;
  l_len: number;
  l_pid: number;
}

interface Fcntl {
  call: (fd: number, command: number, request: LockRequest) => number;
  errno: () => number;
}

let fcntlBinding: Fcntl | undefined;

function bindFcntl(): Fcntl {
  if (fcntlBinding) return fcntlBinding;
  // Loaded with require beside the CLI bundle (native code cannot be bundled).
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  const libc = koffi.load('libc.so.6');
  // An anonymous struct: koffi's type names are process-wide, and this module may be loaded twice.
  const request = koffi.struct({
    l_type: 'short',
    l_whence: 'short',
    l_start: 'int64_t',
    l_len: 'int64_t',
    l_pid: 'int',
  });
  const fcntl = libc.func('int fcntl(int fd, int cmd, ...)');
  fcntlBinding = {
    call: (fd, command, lock) => fcntl(fd, command, koffi.pointer(request), lock) as number,
    errno: () => koffi.errno(),
  };
  return fcntlBinding;
}

/** A held repository lock. */
export interface RepositoryLock {
  readonly exclusive: boolean;
  release(): void;
}

/**
 * Takes the lock of the repository at `repository` (its `.lock`, created mode 0660 as libostree creates
 * it), shared or exclusive, waiting while another holder excludes it.
 */
export async function lockRepository(
  repository: string,
  exclusive: boolean,
  options: { signal?: AbortSignal | undefined } = {},
): Promise<RepositoryLock> {
  const { call, errno } = bindFcntl();
  const path = join(repository, '.lock');
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o660);
  try {
    const request: LockRequest = {
      l_type: exclusive ? F_WRLCK : F_RDLCK,
      l_whence: 0,
      l_start: 0,
      l_len: 0,
      l_pid: 0,
    };
    let pause = 2;
    for (;;) {
      if (options.signal?.aborted) throw abortError(options.signal);
      if (call(fd, F_OFD_SETLK, request) === 0) break;
      const code = errno();
      if (code !== EAGAIN && code !== EACCES && code !== EINTR) {
        throw new GantryError(ErrorCodes.Internal, `locking ${path}: fcntl failed with errno ${code}`);
      }
      await delay(pause, undefined, options.signal ? { signal: options.signal } : {}).catch(() => {
        throw abortError(options.signal!);
      });
      pause = Math.min(pause * 2, 100);
    }
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  let held = true;
  return {
    exclusive,
    release() {
      if (!held) return;
      held = false;
      call(fd, F_OFD_SETLK, { l_type: F_UNLCK, l_whence: 0, l_start: 0, l_len: 0, l_pid: 0 });
      closeSync(fd);
    },
  };
}
