/**
 * The `gantry` command installed as a user installs it: `npm install -g` of the packed @gantry/cli
 * tarball into a temporary prefix (its dependencies from the npm registry: koffi and the compression
 * bindings, built or fetched as npm does), outside the workspace, then run from the prefix's bin/:
 * --version, inspect, a copy that recompresses with zstd (on Node.js before 22.15 that is the zstd-napi
 * native binding installed beside the bundle) and a copy into containers-storage's overlay driver
 * (whiteouts become character devices made through koffi). skopeo reads what it wrote.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  runSkopeo,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PackedPackage, packPackage, publishablePackages, run, workspaceRoot } from './packing.js';

let root: string;
let prefix: string;
let gantry: string;
let layout: string;
let image: FixtureImage;
let packed: PackedPackage;
let environment: NodeJS.ProcessEnv;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-cli-install-'));
  expect(relative(workspaceRoot, root).startsWith('..')).toBe(true);
  prefix = join(root, 'prefix');
  const cli = publishablePackages().find((pkg) => pkg.name === '@gantry/cli')!;
  packed = await packPackage(cli, join(root, 'tarballs'));
  await mkdir(join(root, 'home'), { recursive: true });
  // Nothing of the workspace is on the way: a clean PATH entry for the prefix, a fresh HOME.
  environment = {
    PATH: `${join(prefix, 'bin')}:${process.env.PATH}`,
    HOME: join(root, 'home'),
    TMPDIR: tmpdir(),
    GANTRY_BLOB_INFO_CACHE: 'off',
  };
  await run(
    'npm',
    [
      'install',
      '--global',
      '--prefix',
      prefix,
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      packed.tarball,
    ],
    {
      cwd: root,
      env: { ...process.env, npm_config_loglevel: 'error', npm_config_cache: process.env.npm_config_cache },
      timeout: 600_000,
    },
  );
  gantry = join(prefix, 'bin', 'gantry');

  image = await buildFixtureImage(
    {
      format: 'oci',
      layers: [
        {
          entries: [
            { type: 'directory', path: 'etc' },
            { type: 'file', path: 'etc/greeting', content: 'hello from the installed CLI test\n' },
            { type: 'file', path: 'etc/removed', content: 'removed by the next layer\n' },
          ],
        },
        {
          entries: [
            { type: 'whiteout', path: 'etc/removed' },
            { type: 'file', path: 'data/random.bin', randomSize: 100_000, seed: 'cli-install' },
          ],
        },
      ],
    },
    { directory: join(root, 'fixture-blobs') },
  );
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
}, 900_000);

afterAll(async () => {
  if (!root) return;
  // skopeo's overlay driver bind-mounts the store's overlay home onto itself (private propagation) and
  // leaves it mounted; unmount whatever is mounted inside the test's directory, deepest first.
  const mountPoints = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((mountPoint) => mountPoint.startsWith(`${root}/`))
    .sort((a, b) => b.length - a.length);
  for (const mountPoint of mountPoints) {
    try {
      await run('umount', [mountPoint]);
    } catch {
      // already gone
    }
  }
  await rm(root, { recursive: true, force: true });
});

async function runInstalled(args: string[]): Promise<string> {
  const { stdout } = await run(gantry, args, { cwd: root, env: environment, timeout: 300_000 });
  return stdout;
}

describe('gantry installed globally from its packed tarball', () => {
  it('is the launcher, the bundle and its native dependencies, nothing from the workspace', async () => {
    const installed = join(prefix, 'lib', 'node_modules', '@gantry', 'cli');
    expect(existsSync(join(installed, 'dist', 'main.cjs'))).toBe(true);
    expect(existsSync(join(installed, 'dist', 'man', 'gantry-copy.1'))).toBe(true);
    expect(existsSync(join(installed, 'node_modules', 'koffi'))).toBe(true);
    // The @gantry packages are inside the bundle, not installed beside it.
    expect(existsSync(join(installed, 'node_modules', '@gantry'))).toBe(false);
    const manifest = JSON.parse(await readFile(join(installed, 'package.json'), 'utf8')) as {
      version: string;
    };
    expect(await runInstalled(['--version'])).toBe(`gantry version ${manifest.version}\n`);
  });

  it('lists its bundled transports', async () => {
    const listed = await runInstalled(['transports']);
    for (const name of ['dir', 'docker', 'oci', 'oci-archive', 'docker-archive', 'containers-storage']) {
      expect(listed).toMatch(new RegExp(`^${name}\\s`, 'm'));
    }
  });

  it('inspects an OCI layout as skopeo does', async () => {
    const ours = JSON.parse(await runInstalled(['inspect', `oci:${layout}:latest`])) as Record<
      string,
      unknown
    >;
    // Debian's skopeo 1.9.3 predates LayersData, which later skopeo prints and gantry does.
    expect(ours.LayersData).toHaveLength(2);
    delete ours.LayersData;
    const theirs = JSON.parse((await runSkopeo(['inspect', `oci:${layout}:latest`])).toString()) as Record<
      string,
      unknown
    >;
    expect(ours.Digest).toBe(image.topLevel.digest);
    expect(ours).toEqual(theirs);
  });

  it('copies with zstd recompression (native zstd binding on Node.js before 22.15), readable by skopeo', async () => {
    const target = join(root, 'zstd-layout');
    await runInstalled([
      '--insecure-policy',
      'copy',
      '-q',
      '--dest-compress-format',
      'zstd',
      `oci:${layout}:latest`,
      `oci:${target}:zstd`,
    ]);
    const manifest = JSON.parse((await runSkopeo(['inspect', '--raw', `oci:${target}:zstd`])).toString()) as {
      layers: { mediaType: string }[];
    };
    expect(manifest.layers.map((layer) => layer.mediaType)).toEqual([
      'application/vnd.oci.image.layer.v1.tar+zstd',
      'application/vnd.oci.image.layer.v1.tar+zstd',
    ]);
    // skopeo decompresses the zstd layers it reads back to the image's DiffIDs.
    const back = join(root, 'back-from-zstd');
    await runSkopeo([
      '--insecure-policy',
      'copy',
      '-q',
      '--dest-compress-format',
      'gzip',
      `oci:${target}:zstd`,
      `dir:${back}`,
    ]);
    const config = JSON.parse((await runSkopeo(['inspect', '--config', `dir:${back}`])).toString()) as {
      rootfs: { diff_ids: string[] };
    };
    const original = JSON.parse(
      (await runSkopeo(['inspect', '--config', `oci:${layout}:latest`])).toString(),
    ) as {
      rootfs: { diff_ids: string[] };
    };
    expect(config.rootfs.diff_ids).toEqual(original.rootfs.diff_ids);
  });

  it('copies into containers-storage with the overlay driver (whiteouts made through koffi), readable by skopeo', async () => {
    const graph = join(root, 'storage', 'graph');
    const runroot = join(root, 'storage', 'run');
    const reference = `containers-storage:[overlay@${graph}+${runroot}]installed/cli:1`;
    // Twice: the second run compiles the bundle from the code cache the first one stored (Node 20's
    // vm.Script cachedData path), where an import() without a loader would fail.
    await runInstalled(['--insecure-policy', 'copy', '-q', `oci:${layout}:latest`, reference]);
    await runInstalled(['--insecure-policy', 'copy', '-q', `oci:${layout}:latest`, reference]);
    const ours = JSON.parse(await runInstalled(['inspect', reference])) as { Layers: string[] };
    expect(ours.Layers).toHaveLength(2);
    const theirs = JSON.parse((await runSkopeo(['inspect', '--config', reference])).toString()) as {
      rootfs: { diff_ids: string[] };
    };
    expect(theirs.rootfs.diff_ids).toEqual(image.images[0]!.diffIds);
  });
});
