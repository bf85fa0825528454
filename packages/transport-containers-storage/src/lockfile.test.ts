import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireLock, lastWriterTokenSize } from './lockfile.js';

let directory: string;

beforeEach(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gantry-lockfile-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

/** A python3 child holding an fcntl (lockf) write lock on `path` until its stdin closes, or until killed. */
function holdLockInChild(path: string): Promise<{ release(): void; kill(): void; exited: Promise<void> }> {
  const child = spawn(
    'python3',
    [
      '-c',
      'import fcntl,sys\nf=open(sys.argv[1],"a+")\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint("locked",flush=True)\nsys.stdin.read()',
      path,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.stdout.once('data', () =>
      resolve({ release: () => child.stdin.end(), kill: () => child.kill('SIGKILL'), exited }),
    );
  });
}

describe('acquireLock', () => {
  it('waits while another process holds the fcntl lock, and takes it once released', async () => {
    const path = join(directory, 'layers.lock');
    const holder = await holdLockInChild(path);
    let waited = false;
    let acquired = false;
    const pending = acquireLock(path, true, { onWait: () => (waited = true) }).then((lock) => {
      acquired = true;
      return lock;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(waited).toBe(true);
    expect(acquired).toBe(false);
    holder.release();
    const lock = await pending;
    lock.release();
    await holder.exited;
  });

  it('gives up a wait at once when aborted, and neither keeps nor leaks the lock afterwards', async () => {
    const path = join(directory, 'layers.lock');
    const holder = await holdLockInChild(path);
    const controller = new AbortController();
    const waiting = acquireLock(path, true, { signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const abortedAt = Date.now();
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'ERR_GANTRY_ABORTED' });
    expect(Date.now() - abortedAt).toBeLessThan(1000);
    // The blocked F_SETLKW gets the lock when the holder lets go, and drops it at once.
    holder.release();
    await holder.exited;
    const lock = await acquireLock(path, true);
    lock.release();
    const next = await holdLockInChild(path);
    next.release();
    await next.exited;
  });

  it('waits in a blocking F_SETLKW (the kernel lists it as a waiter), the event loop running on', async () => {
    const path = join(directory, 'layers.lock');
    const holder = await holdLockInChild(path);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const pending = acquireLock(path, false);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // /proc/locks lists blocked waiters as "<id>: -> POSIX  ADVISORY  READ <pid> …": a poller never is.
    const waiters = (await readFile('/proc/locks', 'utf8'))
      .split('\n')
      .filter((line) => / -> POSIX +ADVISORY +READ +(\d+) /.exec(line)?.[1] === String(process.pid));
    holder.release();
    const lock = await pending;
    clearInterval(timer);
    lock.release();
    await holder.exited;
    expect(waiters).toHaveLength(1);
    expect(ticks).toBeGreaterThan(5);
  });

  it('is not blocked by a lock whose holder died (the kernel drops it)', async () => {
    const path = join(directory, 'images.lock');
    const holder = await holdLockInChild(path);
    holder.kill();
    await holder.exited;
    const lock = await acquireLock(path, true);
    lock.release();
  });

  it('records a 64-byte last-writer token with our PID, as containers/storage lays it out', async () => {
    const path = join(directory, 'layers.lock');
    await writeFile(path, '');
    const lock = await acquireLock(path, true);
    expect(lock.lastWriter()).toBe('');
    const token = lock.recordWrite();
    expect(lock.lastWriter()).toBe(token);
    lock.release();
    const bytes = await readFile(path);
    expect(bytes.length).toBe(lastWriterTokenSize);
    expect(bytes.readUInt32LE(16)).toBe(process.pid);
    const again = await acquireLock(path, true);
    expect(again.recordWrite()).not.toBe(token);
    again.release();
  });

  it('serialises holders inside one process (fcntl locks do not)', async () => {
    const path = join(directory, 'x.lock');
    const order: string[] = [];
    const first = await acquireLock(path, true);
    const second = acquireLock(path, false).then((lock) => {
      order.push('second');
      lock.release();
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    order.push('first released');
    first.release();
    await second;
    expect(order).toEqual(['first released', 'second']);
  });

  it('makes podman wait for the layers lock Gantry holds', async () => {
    const root = join(directory, 'root');
    const runRoot = join(directory, 'run');
    const podman = (args: string[]) =>
      new Promise<number>((resolve, reject) => {
        const child = spawn(
          'podman',
          ['--root', root, '--runroot', runRoot, '--storage-driver', 'vfs', ...args],
          {
            stdio: 'ignore',
          },
        );
        child.on('error', reject);
        child.on('exit', (code) => resolve(code ?? -1));
      });
    expect(await podman(['images'])).toBe(0);
    const lock = await acquireLock(join(root, 'vfs-layers', 'layers.lock'), true);
    let finished = false;
    const run = podman(['images']).then((code) => {
      finished = true;
      return code;
    });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(finished).toBe(false);
    lock.release();
    expect(await run).toBe(0);
  }, 60_000);
});
