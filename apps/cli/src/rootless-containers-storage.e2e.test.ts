/**
 * Rootless containers-storage through the built `gantry` command (run `pnpm build` first): an unprivileged
 * user created here, with subordinate ID ranges, copies an image into their default store (gantry
 * re-executes itself in a user namespace as skopeo does); their podman lists it with the right ID, their
 * skopeo reads it back with the original DiffIDs, and files the image gives to UID 1000 and to UID 70000
 * belong on disk to the user's first and second subordinate ranges (every range is mapped, in the order
 * of /etc/subuid, as podman maps them). The user, their processes (podman's pause process) and files are
 * removed afterwards.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, existsSync, mkdir, readFile, rm } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildFixtureImage, type FixtureImage, writeFixtureToOciLayout } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const launcher = resolve(here, '../bin/gantry');
const builtCli = resolve(here, '../dist/bin.cjs');
const user = `gantryrl${randomBytes(3).toString('hex')}`;
const root = `/tmp/${user}`;
const home = join(root, 'home');
let uid: number;
let image: FixtureImage;

function asUser(command: string, args: string[]): { code: number; stdout: string; stderr: string } {
  const result = spawnSync('runuser', ['-u', user, '--', 'env', `HOME=${home}`, command, ...args], {
    cwd: home,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** The host ID container ID `id` has in the user's namespace: 0 is the user, then each range in turn. */
function hostIdOf(file: string, id: number): number {
  const ranges = execFileSync('grep', [`^${user}:`, file], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .map((line) => ({ start: Number(line.split(':')[1]), count: Number(line.split(':')[2]) }));
  let first = 1;
  for (const range of ranges) {
    if (id < first + range.count) return range.start + (id - first);
    first += range.count;
  }
  throw new Error(`container ID ${id} is not mapped for ${user}`);
}

/** A second subordinate range, far from the first (added after it in /etc/subuid and /etc/subgid). */
const secondRangeStart = 300_000_000 + Math.floor(Math.random() * 1000) * 65_536;

beforeAll(async () => {
  if (!existsSync(builtCli)) throw new Error(`${builtCli} is missing: run \`pnpm build\` before this test`);
  await promisify(mkdir)(root, { recursive: true });
  // useradd gives a new user subordinate ranges from /etc/login.defs (SUB_UID_MIN…), as on any Debian.
  execFileSync('useradd', ['-M', '-d', home, '-s', '/bin/sh', user]);
  uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
  let ranges = '';
  try {
    ranges = execFileSync('grep', [`^${user}:`, '/etc/subuid'], { encoding: 'utf8' });
  } catch {
    ranges = '';
  }
  if (!ranges) {
    const start = 400_000 + Math.floor(Math.random() * 1000) * 65_536;
    execFileSync('usermod', [
      '--add-subuids',
      `${start}-${start + 65_535}`,
      '--add-subgids',
      `${start}-${start + 65_535}`,
      user,
    ]);
  }
  execFileSync('usermod', [
    '--add-subuids',
    `${secondRangeStart}-${secondRangeStart + 65_535}`,
    '--add-subgids',
    `${secondRangeStart}-${secondRangeStart + 65_535}`,
    user,
  ]);
  await promisify(mkdir)(home, { recursive: true });
  execFileSync('chown', [`${user}:${user}`, home]);
  image = await buildFixtureImage(
    {
      format: 'oci',
      layers: [
        {
          entries: [
            { type: 'directory', path: 'etc' },
            { type: 'file', path: 'etc/root-owned', content: 'root\n' },
            { type: 'file', path: 'etc/user-owned', content: 'uid 1000\n', uid: 1000, gid: 1000 },
            { type: 'file', path: 'etc/high-owned', content: 'uid 70000\n', uid: 70_000, gid: 70_000 },
          ],
        },
        { entries: [{ type: 'file', path: 'etc/second', content: 'second layer\n' }] },
      ],
    },
    { directory: join(root, 'blobs') },
  );
  await writeFixtureToOciLayout(image, join(root, 'layout'), 't');
  execFileSync('chmod', ['-R', 'a+rX', join(root, 'layout')]);
  await promisify(chmod)(root, 0o755);
}, 120_000);

afterAll(async () => {
  // podman leaves a pause process per rootless user; stop it by its PID file, then remove the user.
  for (const directory of [`/tmp/podman-run-${uid}`, `/tmp/containers-user-${uid}`, `/run/user/${uid}`]) {
    const pidFile = join(directory, 'libpod', 'tmp', 'pause.pid');
    if (existsSync(pidFile)) {
      const pid = Number((await promisify(readFile)(pidFile, 'utf8')).trim());
      if (pid > 1) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
    }
  }
  spawnSync('userdel', [user]);
  for (const directory of [root, `/tmp/podman-run-${uid}`, `/tmp/containers-user-${uid}`]) {
    await promisify(rm)(directory, { recursive: true, force: true });
  }
}, 60_000);

describe('rootless containers-storage', () => {
  it('writes to the user default store, which their podman and skopeo read', async () => {
    const copied = asUser(launcher, [
      '--insecure-policy',
      'copy',
      '-q',
      `oci:${join(root, 'layout')}:t`,
      'containers-storage:x:t',
    ]);
    expect(copied.code, copied.stderr).toBe(0);

    const listed = asUser('podman', ['images', '--format', 'json']);
    expect(listed.code, listed.stderr).toBe(0);
    const images = JSON.parse(listed.stdout);
    expect(images.map((entry: { Id: string }) => entry.Id)).toEqual([image.images[0]!.configDigest.slice(7)]);

    const out = join(home, 'out');
    const readBack = asUser('skopeo', [
      '--insecure-policy',
      'copy',
      '-q',
      'containers-storage:x:t',
      `oci:${out}:t`,
    ]);
    expect(readBack.code, readBack.stderr).toBe(0);
    const config = asUser('skopeo', ['inspect', '--config', `oci:${out}:t`]);
    expect(JSON.parse(config.stdout).rootfs.diff_ids).toEqual(image.images[0]!.diffIds);

    // On disk (the default rootless store, vfs), UID 1000 of the image is the first range's start + 999;
    // UID 70000 lies beyond the first range (65,536 IDs) and lands in the second.
    const store = join(home, '.local', 'share', 'containers', 'storage');
    const layers = await readdir(join(store, 'vfs', 'dir'));
    expect(layers.length).toBe(2);
    for (const layer of layers) {
      const owned = await lstat(join(store, 'vfs', 'dir', layer, 'etc', 'user-owned'));
      expect({ uid: owned.uid, gid: owned.gid }).toEqual({
        uid: hostIdOf('/etc/subuid', 1000),
        gid: hostIdOf('/etc/subgid', 1000),
      });
      const high = await lstat(join(store, 'vfs', 'dir', layer, 'etc', 'high-owned'));
      expect({ uid: high.uid, gid: high.gid }).toEqual({
        uid: hostIdOf('/etc/subuid', 70_000),
        gid: hostIdOf('/etc/subgid', 70_000),
      });
      expect(high.uid).toBeGreaterThanOrEqual(secondRangeStart);
      const rootOwned = await lstat(join(store, 'vfs', 'dir', layer, 'etc', 'root-owned'));
      expect(rootOwned.uid).toBe(uid);
    }
  }, 300_000);
});
