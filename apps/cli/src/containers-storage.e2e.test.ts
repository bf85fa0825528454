/**
 * containers-storage: through the `gantry` command, on a store of the test's own (graph root and run root
 * under a temporary directory): copy in, inspect (as skopeo inspects), copy out, delete, and the exit code
 * of a missing image.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGantry, runSkopeo } from './test-support/run.js';

let root: string;
let store: string;
let image: FixtureImage;
let layout: string;

function podman(...args: string[]): string {
  return execFileSync(
    'podman',
    ['--root', join(root, 'graph'), '--runroot', join(root, 'run'), '--storage-driver', 'vfs', ...args],
    { encoding: 'utf8', env: { ...process.env, CONTAINERS_STORAGE_CONF: join(root, 'storage.conf') } },
  );
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'gantry-cli-cstorage-'));
  await writeFile(
    join(root, 'storage.conf'),
    `[storage]\ndriver = "vfs"\ngraphroot = "${root}/graph"\nrunroot = "${root}/run"\n`,
  );
  store = `[vfs@${root}/graph+${root}/run]`;
  image = await buildFixtureImage(fixturePresets.whiteoutLayers, { directory: join(root, 'blobs') });
  layout = join(root, 'layout');
  await writeFixtureToOciLayout(image, layout, 'latest');
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('containers-storage: through the CLI', () => {
  it('copies in, inspects as skopeo does, copies out, deletes', async () => {
    const copied = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      `oci:${layout}:latest`,
      `containers-storage:${store}cli/test:v1`,
    ]);
    expect(copied.code, copied.stderr).toBe(0);
    expect(podman('images', '--format', '{{.Id}} {{.Repository}}:{{.Tag}}').trim()).toBe(
      `${image.images[0]!.configDigest.slice(7)} docker.io/cli/test:v1`,
    );

    const ours = await runGantry(['inspect', `containers-storage:${store}cli/test:v1`]);
    expect(ours.code, ours.stderr).toBe(0);
    const theirs = runSkopeo(['inspect', `containers-storage:${store}cli/test:v1`]);
    expect(theirs.code, theirs.stderr).toBe(0);
    const skopeoJson = JSON.parse(theirs.stdout.toString());
    const gantryJson = JSON.parse(ours.stdout.toString());
    for (const key of Object.keys(skopeoJson)) expect(gantryJson[key], key).toEqual(skopeoJson[key]);

    const config = await runGantry(['inspect', '--config', `containers-storage:${store}cli/test:v1`]);
    expect(JSON.parse(config.stdout.toString()).rootfs.diff_ids).toEqual(image.images[0]!.diffIds);

    const out = join(root, 'out');
    const copiedOut = await runGantry([
      '--insecure-policy',
      'copy',
      '-q',
      `containers-storage:${store}cli/test:v1`,
      `oci:${out}:x`,
    ]);
    expect(copiedOut.code, copiedOut.stderr).toBe(0);
    expect(
      JSON.parse(runSkopeo(['inspect', '--config', `oci:${out}:x`]).stdout.toString()).rootfs.diff_ids,
    ).toEqual(image.images[0]!.diffIds);

    const deleted = await runGantry(['delete', `containers-storage:${store}cli/test:v1`]);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(podman('images', '-q').trim()).toBe('');
  }, 180_000);

  it('exits 2 for a missing image', async () => {
    const missing = await runGantry(['inspect', `containers-storage:${store}not/there:v1`]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/not there|does not resolve|not/);
    const deleteMissing = await runGantry(['delete', `containers-storage:${store}not/there:v1`]);
    expect(deleteMissing.code).toBe(2);
  }, 60_000);

  it('names the file and line of a malformed storage.conf', async () => {
    const broken = join(root, 'broken.conf');
    await writeFile(broken, '[storage]\ndriver = "vfs"\ngraphroot = \n');
    // The transport reads storage.conf from the process environment, as containers/storage does.
    const saved = process.env.CONTAINERS_STORAGE_CONF;
    process.env.CONTAINERS_STORAGE_CONF = broken;
    const result = await runGantry(['inspect', 'containers-storage:busybox']).finally(() => {
      if (saved === undefined) delete process.env.CONTAINERS_STORAGE_CONF;
      else process.env.CONTAINERS_STORAGE_CONF = saved;
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${broken}:3`);
  }, 60_000);
});
