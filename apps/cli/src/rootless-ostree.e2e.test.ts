/**
 * Rootless ostree: through the built `gantry` command (run `pnpm build` first): an unprivileged user
 * created here copies an image whose files belong to root and to UID 1000 into a new repository of
 * theirs, which Gantry creates in mode `bare-user`; their `ostree fsck` is clean, and their `gantry copy`
 * back out gives the original DiffIDs (owners come from the tar-split, not from the files the user
 * owns). The user and their files are removed afterwards.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { buildFixtureImage, type FixtureImage, writeFixtureToOciLayout } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireTool } from './test-support/run.js';

const here = dirname(fileURLToPath(import.meta.url));
const launcher = resolve(here, '../bin/gantry');
const builtCli = resolve(here, '../dist/bin.cjs');
const user = `gantryot${randomBytes(3).toString('hex')}`;
const root = `/tmp/${user}`;
const home = join(root, 'home');
let image: FixtureImage;

function asUser(command: string, args: string[]): { code: number; stdout: string; stderr: string } {
  const result = spawnSync('runuser', ['-u', user, '--', 'env', `HOME=${home}`, command, ...args], {
    cwd: home,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

beforeAll(async () => {
  requireTool('ostree');
  if (!existsSync(builtCli)) throw new Error(`${builtCli} is missing: run \`pnpm build\` before this test`);
  await mkdir(root, { recursive: true });
  execFileSync('useradd', ['-M', '-d', home, '-s', '/bin/sh', user]);
  await mkdir(home, { recursive: true });
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
            { type: 'file', path: 'etc/setuid', content: 'mode 4755\n', mode: 0o4755 },
            { type: 'symlink', path: 'etc/link', target: 'root-owned' },
          ],
        },
        { entries: [{ type: 'file', path: 'etc/second', content: 'second layer\n' }] },
      ],
    },
    { directory: join(root, 'blobs') },
  );
  await writeFixtureToOciLayout(image, join(root, 'layout'), 't');
  execFileSync('chmod', ['-R', 'a+rX', join(root, 'layout')]);
  await chmod(root, 0o755);
}, 120_000);

afterAll(async () => {
  spawnSync('userdel', [user]);
  await rm(root, { recursive: true, force: true });
}, 60_000);

describe('rootless ostree', () => {
  it('copies into a new bare-user repository and reads it back with the original DiffIDs', async () => {
    const repo = join(home, 'repo');
    const copied = asUser(launcher, [
      '--insecure-policy',
      'copy',
      '-q',
      `oci:${join(root, 'layout')}:t`,
      `ostree:img:t@${repo}`,
    ]);
    expect(copied.code, copied.stderr).toBe(0);
    expect(await readFile(join(repo, 'config'), 'utf8')).toMatch(/^mode=bare-user$/m);
    const fsck = asUser('ostree', ['fsck', `--repo=${repo}`]);
    expect(fsck.code, fsck.stderr).toBe(0);

    const out = join(home, 'out');
    const readBack = asUser(launcher, [
      '--insecure-policy',
      'copy',
      '-q',
      `ostree:img:t@${repo}`,
      `oci:${out}:t`,
    ]);
    expect(readBack.code, readBack.stderr).toBe(0);
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as {
      manifests: { digest: string }[];
    };
    const manifest = JSON.parse(
      await readFile(join(out, 'blobs', 'sha256', index.manifests[0]!.digest.slice(7)), 'utf8'),
    ) as { config: { digest: string }; layers: { digest: string }[] };
    expect(manifest.config.digest).toBe(image.images[0]!.configDigest);
    const diffIds = await Promise.all(
      manifest.layers.map(async (layer) => {
        const blob = await readFile(join(out, 'blobs', 'sha256', layer.digest.slice(7)));
        const tar = blob[0] === 0x1f && blob[1] === 0x8b ? gunzipSync(blob) : blob;
        return `sha256:${createHash('sha256').update(tar).digest('hex')}`;
      }),
    );
    expect(diffIds).toEqual(image.images[0]!.diffIds);
  }, 300_000);
});
