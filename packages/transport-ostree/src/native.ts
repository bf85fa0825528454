/**
 * Three libc calls Node.js does not offer, through koffi (a dependency of `@gantry/layer-tree` already),
 * bound on first use:
 * - `pipe2(O_CLOEXEC)`: an anonymous pipe whose read end a child gets as one of its descriptors (Node's
 *   `stdio: 'pipe'` is a socket, which `ostree commit --tree=tar=/dev/fd/N` cannot open; a named fifo
 *   would stay behind in the repository when the process is killed);
 * - `renameat2(RENAME_NOREPLACE)`: moves a file or a whole directory to a name only if nothing has that
 *   name yet, atomically (an object another writer put there first is never replaced);
 * - `syncfs`: writes out everything of one file system, as libostree does once per transaction (run on
 *   a worker thread: it waits for the disk).
 */
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { getSystemErrorName } from 'node:util';

const O_CLOEXEC = 0o2000000;
const AT_FDCWD = -100;
const RENAME_NOREPLACE = 1;
const EEXIST = 17;
const ENOENT = 2;
const ENOTEMPTY = 39;

interface Native {
  pipe2: (fds: Int32Array, flags: number) => number;
  renameat2: (
    oldDirectory: number,
    oldPath: string,
    newDirectory: number,
    newPath: string,
    flags: number,
  ) => number;
  syncfs: { async: (fd: number, callback: (error: unknown, result: number) => void) => void };
  errno: () => number;
}

let native: Native | undefined;

function bind(): Native {
  if (native) return native;
  // Loaded with require beside the CLI bundle (native code cannot be bundled).
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  const libc = koffi.load('libc.so.6');
  native = {
    pipe2: libc.func('int pipe2(_Out_ int *fds, int flags)') as Native['pipe2'],
    renameat2: libc.func(
      'int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)',
    ) as Native['renameat2'],
    syncfs: libc.func('int syncfs(int fd)') as unknown as Native['syncfs'],
    errno: () => koffi.errno(),
  };
  return native;
}

/** A system error as Node.js reports one (`code`, `errno`, `syscall`, `path`). */
function systemError(syscall: string, errno: number, path: string): NodeJS.ErrnoException {
  let code: string;
  try {
    code = getSystemErrorName(-errno);
  } catch {
    code = `E${errno}`;
  }
  return Object.assign(new Error(`${code}: ${syscall} failed, ${syscall} '${path}'`), {
    code,
    errno: -errno,
    syscall,
    path,
  });
}

/** An anonymous pipe, both ends close-on-exec: `[read, write]`. */
export function makePipe(): [number, number] {
  const { pipe2, errno } = bind();
  const fds = new Int32Array(2);
  if (pipe2(fds, O_CLOEXEC) !== 0) throw systemError('pipe2', errno(), '');
  return [fds[0]!, fds[1]!];
}

/**
 * Renames `from` to `to` unless `to` exists: `'moved'`, `'exists'` (nothing changed), or `'no-parent'`
 * when `to`'s directory does not exist. Any other failure throws.
 */
export function renameNoReplace(from: string, to: string): 'moved' | 'exists' | 'no-parent' {
  const { renameat2, errno } = bind();
  if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) === 0) return 'moved';
  const code = errno();
  if (code === EEXIST || code === ENOTEMPTY) return 'exists';
  if (code === ENOENT) return 'no-parent';
  throw systemError('rename', code, to);
}

/**
 * Writes out everything of the file system holding `path` not on the disk yet (`syncfs`), on a worker
 * thread; an I/O error throws.
 */
export async function syncFileSystem(path: string): Promise<void> {
  const { syncfs, errno } = bind();
  const handle = await open(path, 'r');
  try {
    await new Promise<void>((resolve, reject) => {
      syncfs.async(handle.fd, (error, result) => {
        // koffi sets errno to the worker thread's while the callback runs.
        if (error) reject(error);
        else if (result !== 0) reject(systemError('syncfs', errno(), path));
        else resolve();
      });
    });
  } finally {
    await handle.close();
  }
}
