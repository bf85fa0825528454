/**
 * libc calls Node.js does not offer, through koffi (a dependency of `@gantry/layer-tree` already),
 * bound on first use:
 * - `pipe2(O_CLOEXEC)`: an anonymous pipe whose read end a child gets as one of its descriptors (Node's
 *   `stdio: 'pipe'` is a socket, which `ostree commit --tree=tar=/dev/fd/N` cannot open; a named fifo
 *   would stay behind in the repository when the process is killed);
 * - `renameat2(RENAME_NOREPLACE)`: moves a file or a whole directory to a name only if nothing has that
 *   name yet, atomically (an object another writer put there first is never replaced);
 * - `syncfs`: writes out everything of one file system, as libostree does once per transaction (run on
 *   a worker thread: it waits for the disk);
 * - `posix_spawnp` and `waitpid`: starting a process without copying this one (see `spawnProcess`).
 */
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';

const O_CLOEXEC = 0o2000000;
const AT_FDCWD = -100;
const RENAME_NOREPLACE = 1;
const EEXIST = 17;
const ENOENT = 2;
const ENOTEMPTY = 39;
const EINTR = 4;

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
  posixSpawnp: (
    pid: Int32Array,
    file: string,
    fileActions: Buffer,
    attributes: Buffer,
    argv: (string | null)[],
    envp: (string | null)[],
  ) => number;
  fileActionsInit: (fileActions: Buffer) => number;
  fileActionsDestroy: (fileActions: Buffer) => number;
  fileActionsAddDup2: (fileActions: Buffer, fd: number, newFd: number) => number;
  fileActionsAddOpen: (fileActions: Buffer, fd: number, path: string, flags: number, mode: number) => number;
  /** glibc 2.34 and later; undefined elsewhere. */
  fileActionsAddCloseFrom: ((fileActions: Buffer, from: number) => number) | undefined;
  spawnAttributesInit: (attributes: Buffer) => number;
  spawnAttributesDestroy: (attributes: Buffer) => number;
  spawnAttributesSetFlags: (attributes: Buffer, flags: number) => number;
  spawnAttributesSetSignalDefault: (attributes: Buffer, signals: Buffer) => number;
  spawnAttributesSetSignalMask: (attributes: Buffer, signals: Buffer) => number;
  signalSetFill: (signals: Buffer) => number;
  signalSetEmpty: (signals: Buffer) => number;
  waitpid: {
    async: (
      pid: number,
      status: Int32Array,
      options: number,
      callback: (error: unknown, result: number) => void,
    ) => void;
  };
}

let native: Native | undefined;

/** The function `bind` returns, or undefined when the C library lacks it. */
function optional<T>(bind: () => T): T | undefined {
  try {
    return bind();
  } catch {
    return undefined;
  }
}

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
    posixSpawnp: libc.func(
      'int posix_spawnp(_Out_ int *pid, const char *file, void *file_actions, void *attrp, const char **argv, const char **envp)',
    ) as Native['posixSpawnp'],
    fileActionsInit: libc.func(
      'int posix_spawn_file_actions_init(void *file_actions)',
    ) as Native['fileActionsInit'],
    fileActionsDestroy: libc.func(
      'int posix_spawn_file_actions_destroy(void *file_actions)',
    ) as Native['fileActionsDestroy'],
    fileActionsAddDup2: libc.func(
      'int posix_spawn_file_actions_adddup2(void *file_actions, int fd, int newfd)',
    ) as Native['fileActionsAddDup2'],
    fileActionsAddOpen: libc.func(
      'int posix_spawn_file_actions_addopen(void *file_actions, int fd, const char *path, int oflag, unsigned int mode)',
    ) as Native['fileActionsAddOpen'],
    fileActionsAddCloseFrom: optional(() =>
      libc.func('int posix_spawn_file_actions_addclosefrom_np(void *file_actions, int from)'),
    ) as Native['fileActionsAddCloseFrom'],
    spawnAttributesInit: libc.func('int posix_spawnattr_init(void *attr)') as Native['spawnAttributesInit'],
    spawnAttributesDestroy: libc.func(
      'int posix_spawnattr_destroy(void *attr)',
    ) as Native['spawnAttributesDestroy'],
    spawnAttributesSetFlags: libc.func(
      'int posix_spawnattr_setflags(void *attr, short flags)',
    ) as Native['spawnAttributesSetFlags'],
    spawnAttributesSetSignalDefault: libc.func(
      'int posix_spawnattr_setsigdefault(void *attr, const void *sigdefault)',
    ) as Native['spawnAttributesSetSignalDefault'],
    spawnAttributesSetSignalMask: libc.func(
      'int posix_spawnattr_setsigmask(void *attr, const void *sigmask)',
    ) as Native['spawnAttributesSetSignalMask'],
    signalSetFill: libc.func('int sigfillset(void *set)') as Native['signalSetFill'],
    signalSetEmpty: libc.func('int sigemptyset(void *set)') as Native['signalSetEmpty'],
    waitpid: libc.func(
      'int waitpid(int pid, _Out_ int *status, int options)',
    ) as unknown as Native['waitpid'],
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
  const handle = await open(path, 'r');
  try {
    await syncFileSystemOf(handle.fd, path);
  } finally {
    await handle.close();
  }
}

/**
 * `syncfs` of the file system of the open descriptor `fd` (`path` names it in errors), on a worker
 * thread. The kernel reports a write-back error to each open file once: syncs meant to report every
 * error since a point use one descriptor opened then.
 */
export function syncFileSystemOf(fd: number, path: string): Promise<void> {
  const { syncfs, errno } = bind();
  return new Promise<void>((resolve, reject) => {
    syncfs.async(fd, (error, result) => {
      // koffi sets errno to the worker thread's while the callback runs.
      if (error) reject(error);
      else if (result !== 0) reject(systemError('syncfs', errno(), path));
      else resolve();
    });
  });
}

// glibc's values (also musl's).
const O_RDONLY = 0;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
/** Larger than `posix_spawn_file_actions_t` (80 bytes), `posix_spawnattr_t` (336) and `sigset_t` (128). */
const opaqueBytes = 1024;

/**
 * Starts `file` (looked up in `PATH`) with `args` and this process's environment, with `descriptors[n]`
 * as its descriptor n from 1 on (`null`: `/dev/null`; standard input is `/dev/null`) and no other of
 * ours (glibc's `posix_spawn_file_actions_addclosefrom_np`; elsewhere, descriptors are closed on exec,
 * as Node.js opens them all), every signal at its default action and none blocked, as Node.js's `spawn`
 * leaves them. Returns the process id; a failure to start (`ENOENT`…) throws a system error naming
 * `spawn FILE`.
 *
 * Why not `child_process.spawn`: libuv starts a child with `fork`, which copies this process's page
 * tables and makes every page of it copy-on-write, so each page this process writes afterwards takes a
 * page fault (measured: 82,000 faults over 4 spawns for a process writing to 80 MiB of buffers,
 * 99 with `posix_spawn`, which glibc implements with `clone(CLONE_VM | CLONE_VFORK)`).
 */
export function spawnProcess(file: string, args: readonly string[], descriptors: (number | null)[]): number {
  const n = bind();
  const actions = Buffer.alloc(opaqueBytes);
  const attributes = Buffer.alloc(opaqueBytes);
  const check = (call: string, result: number) => {
    if (result !== 0) throw systemError(call, result, file);
  };
  check('posix_spawn_file_actions_init', n.fileActionsInit(actions));
  try {
    check('posix_spawnattr_init', n.spawnAttributesInit(attributes));
    try {
      check('posix_spawn_file_actions_addopen', n.fileActionsAddOpen(actions, 0, '/dev/null', O_RDONLY, 0));
      descriptors.forEach((fd, index) => {
        const target = index + 1;
        if (fd === null) {
          check(
            'posix_spawn_file_actions_addopen',
            n.fileActionsAddOpen(actions, target, '/dev/null', O_RDONLY, 0),
          );
        } else if (fd <= index) {
          // The actions run in order: a source among the targets set before it would be gone. (Node.js
          // keeps 0–2 open, so the pipes made for a child never have these numbers.)
          throw new Error(`spawnProcess: descriptor ${fd} would be replaced before it is copied`);
        } else {
          // A descriptor copied to its own number (dup2(3, 3)) loses close-on-exec: glibc 2.29 and later.
          check('posix_spawn_file_actions_adddup2', n.fileActionsAddDup2(actions, fd, target));
        }
      });
      if (n.fileActionsAddCloseFrom) {
        check(
          'posix_spawn_file_actions_addclosefrom_np',
          n.fileActionsAddCloseFrom(actions, descriptors.length + 1),
        );
      }
      const allSignals = Buffer.alloc(opaqueBytes);
      const noSignals = Buffer.alloc(opaqueBytes);
      n.signalSetFill(allSignals);
      n.signalSetEmpty(noSignals);
      check('posix_spawnattr_setsigdefault', n.spawnAttributesSetSignalDefault(attributes, allSignals));
      check('posix_spawnattr_setsigmask', n.spawnAttributesSetSignalMask(attributes, noSignals));
      check(
        'posix_spawnattr_setflags',
        n.spawnAttributesSetFlags(attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK),
      );
      const environment = Object.entries(process.env)
        .filter((entry): entry is [string, string] => entry[1] !== undefined)
        .map(([name, value]) => `${name}=${value}`);
      const pid = new Int32Array(1);
      const result = n.posixSpawnp(
        pid,
        file,
        actions,
        attributes,
        [file, ...args, null],
        [...environment, null],
      );
      if (result !== 0) throw systemError(`spawn ${file}`, result, file);
      return pid[0]!;
    } finally {
      n.spawnAttributesDestroy(attributes);
    }
  } finally {
    n.fileActionsDestroy(actions);
  }
}

/**
 * Waits for the process `pid` (a child `spawnProcess` started) to end and collects it: its exit code, or
 * the signal that ended it. `waitpid` blocks a worker thread until then: call it once the process is
 * known to be ending (its output pipes closed).
 */
export function waitForProcess(pid: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const { waitpid, errno } = bind();
  const status = new Int32Array(1);
  return new Promise((resolve, reject) => {
    const attempt = () => {
      waitpid.async(pid, status, 0, (error, result) => {
        if (error) return reject(error);
        if (result === pid) {
          const value = status[0]!;
          const terminatingSignal = value & 0x7f;
          if (terminatingSignal === 0) return resolve({ code: (value >> 8) & 0xff, signal: null });
          const name = Object.entries(osConstants.signals).find(([, number]) => number === terminatingSignal);
          return resolve({ code: null, signal: (name?.[0] ?? null) as NodeJS.Signals | null });
        }
        const code = errno();
        if (code === EINTR) return attempt();
        reject(systemError('waitpid', code, String(pid)));
      });
    };
    attempt();
  });
}
