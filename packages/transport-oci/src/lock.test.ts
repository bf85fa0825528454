import { stat, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { lockFilePath, withLayoutLock } from './lock.js';
import { temporaryDirectory } from './test-support/images.js';

let directory = '';
let remove: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ directory, remove } = await temporaryDirectory());
});
afterEach(() => remove());

describe('withLayoutLock', () => {
  it('lets one holder at a time in, and removes the lock file after', async () => {
    let inside = 0;
    let maximum = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 8 }, (_, position) =>
        withLayoutLock(directory, {}, async () => {
          inside++;
          maximum = Math.max(maximum, inside);
          await sleep(5);
          order.push(position);
          inside--;
        }),
      ),
    );
    expect(maximum).toBe(1);
    expect(order.sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    await expect(stat(lockFilePath(directory))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('releases the lock when the action fails', async () => {
    await expect(
      withLayoutLock(directory, {}, async () => {
        throw new Error('action failed');
      }),
    ).rejects.toThrow('action failed');
    await expect(stat(lockFilePath(directory))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('breaks a lock older than staleAfterMs, even when unreadable', async () => {
    await writeFile(lockFilePath(directory), '');
    const old = new Date(Date.now() - 10_000);
    await utimes(lockFilePath(directory), old, old);
    await expect(
      withLayoutLock(directory, { staleAfterMs: 5_000, timeoutMs: 2_000 }, async () => 'ran'),
    ).resolves.toBe('ran');
  });

  it('waits for a fresh lock of a live process and times out with ERR_GANTRY_TRANSIENT', async () => {
    await writeFile(
      lockFilePath(directory),
      JSON.stringify({ pid: process.pid, hostname: hostname(), token: 'x' }),
    );
    const started = Date.now();
    await expect(withLayoutLock(directory, { timeoutMs: 200 }, async () => 'ran')).rejects.toMatchObject({
      code: 'ERR_GANTRY_TRANSIENT',
      message: expect.stringContaining(`held by process ${process.pid}`),
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    // The other holder's lock is left alone.
    expect((await stat(lockFilePath(directory))).isFile()).toBe(true);
  });

  it('stops waiting when aborted', async () => {
    await writeFile(
      lockFilePath(directory),
      JSON.stringify({ pid: process.pid, hostname: hostname(), token: 'x' }),
    );
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    await expect(
      withLayoutLock(directory, { signal: controller.signal }, async () => 'ran'),
    ).rejects.toMatchObject({
      code: 'ERR_GANTRY_ABORTED',
    });
  });
});
