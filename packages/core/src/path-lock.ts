/**
 * A lock on a path that several processes write (an archive file that each writer replaces): a lock
 * file beside it, `.<name>.gantry-lock`, that exists while one writer holds the lock.
 *
 * - Taking the lock creates the lock file atomically with its content: the content (an
 *   `ownedTemporaryName`, which names the owner process and a random part) is written to a temporary
 *   file first, then hard-linked to the lock file's name; `link` fails with `EEXIST` when the lock is
 *   held, so no one ever sees a lock file without its owner. (Where the file system has no hard links,
 *   the lock file is created with `O_EXCL` and written; a lock file still empty is then taken as held.)
 * - A held lock is waited for, polling (25 ms at first, then up to every 250 ms), as long as the signal
 *   does not fire. A lock whose owner is certainly dead (`temporaryOwnerState` says `gone`: killed with
 *   `kill -9`, an earlier boot) is broken: it is renamed to a name of this process, and removed when the
 *   renamed file is still the dead owner's; in the rare case another process broke the same lock and
 *   took it in between, the renamed lock is linked back. An owner on another machine or in another PID
 *   namespace (`unknown`) is never taken for dead: its lock is waited for.
 * - `release()` removes the lock file only while it still holds this holder's content.
 *
 * Record locks (`fcntl`), which the kernel drops when a process dies, need a native binding in Node;
 * this lock needs none, which keeps the archive transports free of native code.
 */
import { link, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { abortError, throwIfAborted } from './errors.js';
import { errorCode } from './file-system.js';
import {
  ownedTemporaryName,
  parseOwnedTemporaryName,
  removeAbandonedTemporaryFiles,
  temporaryOwnerState,
} from './temporary-files.js';

/** The lock file guarding `target`: `.<file name>.gantry-lock` in the same directory. */
export function pathLockFile(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.gantry-lock`);
}

/** A lock taken by `lockPath`. */
export interface PathLock {
  /** The lock file. */
  readonly file: string;
  /** Removes the lock file if it is still this holder's; later calls do nothing. */
  release(): Promise<void>;
}

/** Options of `lockPath`. */
export interface LockPathOptions {
  /** Stops waiting for a held lock (rejects with `ERR_GANTRY_ABORTED`). */
  signal?: AbortSignal;
  /** Called once when the lock is held by another process and this one starts waiting. */
  onWait?: (holder: string) => void;
}

function wait(milliseconds: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, milliseconds);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function readOwner(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

/** Creates the lock file holding `content`; false when it exists. */
async function create(file: string, content: string): Promise<boolean> {
  const staged = path.join(path.dirname(file), ownedTemporaryName('lock'));
  await writeFile(staged, `${content}\n`, { flag: 'wx', mode: 0o644 });
  try {
    await link(staged, file);
    return true;
  } catch (error) {
    const code = errorCode(error);
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw error;
  } finally {
    await rm(staged, { force: true });
  }
  // No hard links here: O_EXCL, then the content.
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'wx', 0o644);
  } catch (error) {
    if (errorCode(error) === 'EEXIST') return false;
    throw error;
  }
  try {
    await handle.writeFile(`${content}\n`);
  } finally {
    await handle.close();
  }
  return true;
}

/** Breaks the lock file if it still holds `deadOwner`'s content. */
async function breakLock(file: string, deadOwner: string): Promise<void> {
  const moved = path.join(path.dirname(file), ownedTemporaryName('lock-break'));
  try {
    await rename(file, moved);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return; // released or broken by someone else
    throw error;
  }
  const content = await readOwner(moved);
  if (content !== deadOwner) {
    // Another process broke the dead lock and took it in between: give it back.
    await link(moved, file).catch(() => undefined);
  }
  await rm(moved, { force: true });
}

/**
 * Takes the lock guarding `target` (see the module comment), waiting while another live process holds
 * it. File-system errors (a read-only directory) reject as they are.
 */
export async function lockPath(target: string, options: LockPathOptions = {}): Promise<PathLock> {
  const file = pathLockFile(target);
  // What dead lockers left of their staging and breaking (kill -9 between two steps) goes first.
  for (const label of ['lock', 'lock-break']) {
    await removeAbandonedTemporaryFiles(path.dirname(file), { label });
  }
  const content = ownedTemporaryName('lock-owner');
  let pause = 25;
  let announced = false;
  for (;;) {
    throwIfAborted(options.signal);
    if (await create(file, content)) break;
    const holder = await readOwner(file);
    if (holder === undefined) continue; // released just now
    const parsed = parseOwnedTemporaryName(holder);
    if (parsed && temporaryOwnerState(parsed.owner) === 'gone') {
      await breakLock(file, holder);
      continue;
    }
    if (!announced) {
      announced = true;
      options.onWait?.(parsed ? `process ${parsed.owner.pid}` : 'another process');
    }
    await wait(pause, options.signal);
    pause = Math.min(pause * 2, 250);
  }
  let released = false;
  return {
    file,
    async release() {
      if (released) return;
      released = true;
      if ((await readOwner(file)) === content) await rm(file, { force: true });
    },
  };
}
