/**
 * A lock on an OCI layout's `index.json`, shared by every Gantry process: the file
 * `<layout>/index.json.lock`, created with O_EXCL. Whoever creates it holds the lock; others retry with
 * backoff. A lock whose holder is gone is broken: on the same host when its process no longer exists,
 * anywhere when the file is older than `staleAfterMs`.
 *
 * The lock serialises the read-modify-write of `index.json` (commit, delete) and garbage collection of
 * abandoned blobs; it is held for milliseconds, never while blobs are copied.
 */
import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { abortError, ErrorCodes, GantryError } from '@gantry/core/transport';
import { describeFileSystemError, errorCode, indexFileName } from '@gantry/oci-layout-format';

/** Settings of the layout lock. */
export interface LayoutLockOptions {
  /** Give up acquiring after this long (rejecting with `ERR_GANTRY_TRANSIENT`). Default 120 s. */
  timeoutMs?: number;
  /** A lock file older than this is considered abandoned and broken. Default 60 s. */
  staleAfterMs?: number;
}

interface LockContent {
  pid: number;
  hostname: string;
  token: string;
  created: string;
}

const defaultTimeoutMs = 120_000;
const defaultStaleAfterMs = 60_000;

/** The lock file's path for a layout. */
export function lockFilePath(layoutDirectory: string): string {
  return path.join(layoutDirectory, `${indexFileName}.lock`);
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === 'EPERM';
  }
}

function parseLockContent(text: string): LockContent | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockContent>;
    if (
      typeof value.pid === 'number' &&
      typeof value.hostname === 'string' &&
      typeof value.token === 'string'
    ) {
      return value as LockContent;
    }
  } catch {
    // Being written right now, or garbage: judged by age only.
  }
  return undefined;
}

async function tryCreateLock(filePath: string, content: LockContent): Promise<boolean> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(filePath, 'wx', 0o644);
  } catch (error) {
    if (errorCode(error) === 'EEXIST') return false;
    throw new GantryError(
      ErrorCodes.Internal,
      `creating lock ${filePath}: ${describeFileSystemError(error)}`,
      {
        cause: error,
      },
    );
  }
  try {
    await handle.writeFile(JSON.stringify(content));
  } finally {
    await handle.close();
  }
  return true;
}

/**
 * Breaks the lock when it is stale. Returns true when the caller should retry at once. The stale file
 * is first renamed to a unique name (only one breaker can win that) and its token checked, so a fresh
 * lock taken meanwhile by someone else is put back rather than deleted.
 */
async function breakIfStale(filePath: string, staleAfterMs: number): Promise<boolean> {
  let text: string;
  let modified: number;
  try {
    text = await readFile(filePath, 'utf8');
    modified = (await stat(filePath)).mtimeMs;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return true;
    throw error;
  }
  const holder = parseLockContent(text);
  const holderGone = holder !== undefined && holder.hostname === hostname() && !processExists(holder.pid);
  const tooOld = Date.now() - modified > staleAfterMs;
  if (!holderGone && !tooOld) return false;

  const asidePath = `${filePath}.stale-${randomBytes(6).toString('hex')}`;
  try {
    await rename(filePath, asidePath);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return true; // someone else broke it
    throw error;
  }
  const asideText = await readFile(asidePath, 'utf8').catch(() => '');
  if (asideText !== text) {
    // Not the file judged stale: a fresh lock taken in between. Put it back if nobody holds the lock now.
    await link(asidePath, filePath).catch(() => undefined);
  }
  await rm(asidePath, { force: true });
  return true;
}

/**
 * Runs `action` holding the lock of `layoutDirectory` (which must exist), and releases the lock after.
 * Rejects with `ERR_GANTRY_TRANSIENT` when the lock cannot be acquired within the timeout, and with
 * `ERR_GANTRY_ABORTED` when `signal` fires while waiting.
 */
export async function withLayoutLock<T>(
  layoutDirectory: string,
  options: LayoutLockOptions & { signal?: AbortSignal | undefined },
  action: () => Promise<T>,
): Promise<T> {
  const filePath = lockFilePath(layoutDirectory);
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  const staleAfterMs = options.staleAfterMs ?? defaultStaleAfterMs;
  const content: LockContent = {
    pid: process.pid,
    hostname: hostname(),
    token: randomBytes(12).toString('hex'),
    created: new Date().toISOString(),
  };
  const deadline = Date.now() + timeoutMs;
  let delayMs = 5;
  for (;;) {
    if (options.signal?.aborted) throw abortError(options.signal);
    if (await tryCreateLock(filePath, content)) break;
    if (await breakIfStale(filePath, staleAfterMs)) continue;
    if (Date.now() >= deadline) {
      const holder = parseLockContent(await readFile(filePath, 'utf8').catch(() => ''));
      const holderDescription = holder ? ` (held by process ${holder.pid} on ${holder.hostname})` : '';
      throw new GantryError(
        ErrorCodes.Transient,
        `timed out after ${timeoutMs} ms waiting for the OCI layout lock ${filePath}${holderDescription}`,
        { retryable: true },
      );
    }
    const jitter = Math.random() * delayMs;
    try {
      await sleep(delayMs + jitter, undefined, options.signal ? { signal: options.signal } : undefined);
    } catch (error) {
      if (options.signal?.aborted) throw abortError(options.signal);
      throw error;
    }
    delayMs = Math.min(delayMs * 2, 250);
  }

  try {
    return await action();
  } finally {
    // Release only our own lock (it could have been broken as stale and retaken by someone else).
    const current = await readFile(filePath, 'utf8').catch(() => '');
    if (parseLockContent(current)?.token === content.token) {
      await unlink(filePath).catch((error: unknown) => {
        if (errorCode(error) !== 'ENOENT') throw error;
      });
    }
  }
}
