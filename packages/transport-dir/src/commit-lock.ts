/**
 * The commit lock of a `dir:` directory: a directory `<dir>/.gantry-commit-lock`, created with mkdir
 * (atomic: whoever creates it holds the lock), holding one empty file named by `ownedTemporaryName`
 * that says who. Commits of several processes to one directory then run one after the other, so one
 * commit's removal of "everything not part of my image" never deletes files another commit just
 * moved in. A lock whose owner is gone (`temporaryOwnerState`) is broken, and so is an ownerless one
 * older than `ownerlessStaleMs` (its creator died between mkdir and writing the owner file).
 */
import { lstat, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  abortError,
  ErrorCodes,
  errorCode,
  GantryError,
  ownedTemporaryName,
  parseOwnedTemporaryName,
  temporaryOwnerState,
} from '@gantry/core/transport';

/** The lock directory's name inside a `dir:` directory (kept by commits, never part of an image). */
export const commitLockName = '.gantry-commit-lock';
const ownerlessStaleMs = 10_000;
const defaultTimeoutMs = 120_000;

/** Whether the lock at `lock` is abandoned: its owner is gone, or it has had no owner for long. */
async function isAbandoned(lock: string): Promise<boolean> {
  let names: string[];
  try {
    names = await readdir(lock);
  } catch {
    return false; // released meanwhile
  }
  const owner = names.map((name) => parseOwnedTemporaryName(name)).find((parsed) => parsed !== undefined);
  if (owner) return temporaryOwnerState(owner.owner) === 'gone';
  const information = await lstat(lock).catch(() => undefined);
  return information !== undefined && Date.now() - information.mtimeMs > ownerlessStaleMs;
}

/** Runs `operation` holding the commit lock of `directory`. */
export async function withCommitLock<T>(
  directory: string,
  operation: () => Promise<T>,
  options: { signal?: AbortSignal | undefined; timeoutMs?: number } = {},
): Promise<T> {
  const lock = path.join(directory, commitLockName);
  const deadline = Date.now() + (options.timeoutMs ?? defaultTimeoutMs);
  for (let attempt = 0; ; attempt++) {
    if (options.signal?.aborted) throw abortError(options.signal);
    try {
      await mkdir(lock);
      break;
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw error;
    }
    if (await isAbandoned(lock)) {
      await rm(lock, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new GantryError(
        ErrorCodes.Transient,
        `${directory}: another process has been committing an image here for too long (${lock} exists)`,
        { retryable: true },
      );
    }
    await sleep(Math.min(5 * 2 ** Math.min(attempt, 4), 80));
  }
  try {
    await writeFile(path.join(lock, ownedTemporaryName('commit')), '');
    return await operation();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}
