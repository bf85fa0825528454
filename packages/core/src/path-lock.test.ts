import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { lockPath, pathLockFile } from './path-lock.js';
import { ownedTemporaryName } from './temporary-files.js';

let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(path.join(tmpdir(), 'gantry-path-lock-'));
});

afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

/** A lock-owner name of a process that has exited (same machine, boot and PID namespace). */
function deadOwnerName(): string {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], {
    encoding: 'utf8',
  });
  const deadPid = Number(child.stdout);
  expect(Number.isSafeInteger(deadPid)).toBe(true);
  return ownedTemporaryName('lock-owner').replace(/\.(\d+)\.(\d+)\./, `.${deadPid}.$2.`);
}

describe('lockPath', () => {
  it('creates the lock file beside the target and removes it on release', async () => {
    const target = path.join(directory, 'image.tar');
    const lock = await lockPath(target);
    expect(lock.file).toBe(path.join(directory, '.image.tar.gantry-lock'));
    expect(await readdir(directory)).toEqual(['.image.tar.gantry-lock']);
    await lock.release();
    await lock.release();
    expect(await readdir(directory)).toEqual([]);
  });

  it('a second locker waits until the holder releases', async () => {
    const target = path.join(directory, 'image.tar');
    const first = await lockPath(target);
    let waiting!: () => void;
    const startedWaiting = new Promise<void>((resolve) => {
      waiting = resolve;
    });
    let secondHasIt = false;
    const second = lockPath(target, { onWait: () => waiting() }).then((lock) => {
      secondHasIt = true;
      return lock;
    });
    await startedWaiting;
    expect(secondHasIt).toBe(false);
    const holderBeforeRelease = await readFile(first.file, 'utf8');
    await first.release();
    const lock = await second;
    expect(await readFile(lock.file, 'utf8')).not.toBe(holderBeforeRelease);
    await lock.release();
    expect(await readdir(directory)).toEqual([]);
  });

  it('breaks the lock of a process that died (kill -9) and takes it', async () => {
    const target = path.join(directory, 'image.tar');
    await writeFile(pathLockFile(target), `${deadOwnerName()}\n`);
    let waited = false;
    const lock = await lockPath(target, {
      onWait: () => {
        waited = true;
      },
    });
    expect(waited).toBe(false);
    expect(await readFile(lock.file, 'utf8')).toContain(`.${process.pid}.`);
    await lock.release();
    expect(await readdir(directory)).toEqual([]);
  });

  it('waits for an owner it cannot judge (another machine), and stops when aborted', async () => {
    const target = path.join(directory, 'image.tar');
    const foreign = ownedTemporaryName('lock-owner').replace(
      /^\.gantry-tmp-[0-9a-f]{8}/,
      '.gantry-tmp-00000000',
    );
    await writeFile(pathLockFile(target), `${foreign}\n`);
    const abort = new AbortController();
    const attempt = lockPath(target, { signal: abort.signal, onWait: () => abort.abort() });
    await expect(attempt).rejects.toMatchObject({ code: 'ERR_GANTRY_ABORTED' });
    expect((await readFile(pathLockFile(target), 'utf8')).trim()).toBe(foreign);
  });

  it('release leaves a lock file that is no longer its own', async () => {
    const target = path.join(directory, 'image.tar');
    const lock = await lockPath(target);
    await writeFile(lock.file, 'someone else\n');
    await lock.release();
    expect(await readFile(lock.file, 'utf8')).toBe('someone else\n');
  });

  it('removes the staging files of lockers that died', async () => {
    const target = path.join(directory, 'image.tar');
    const leftover = deadOwnerName().replace(/\.lock-owner$/, '.lock');
    await writeFile(path.join(directory, leftover), 'x');
    const lock = await lockPath(target);
    await lock.release();
    expect(await readdir(directory)).toEqual([]);
  });

  it('many lockers in turn: each holds the lock alone', async () => {
    const target = path.join(directory, 'image.tar');
    let holders = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        const lock = await lockPath(target);
        holders++;
        most = Math.max(most, holders);
        await new Promise((resolve) => setImmediate(resolve));
        holders--;
        await lock.release();
      }),
    );
    expect(most).toBe(1);
    expect(await readdir(directory)).toEqual([]);
  });
});
