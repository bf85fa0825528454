/**
 * Each driver end to end: Gantry copies the hand-made image (devices, fifos, xattrs including
 * security.capability, owners, set-uid, hard links, whiteouts, opaque directories) into a store, skopeo
 * copies it into another, and podman mounts both: the mounted file systems are the same, and podman and
 * skopeo read Gantry's store back with the original DiffIDs.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import { runSkopeo } from '@gantry/core/testing';
import { TransportRegistry } from '@gantry/core/transport';
import {
  describeTree,
  ociLayoutFromTars,
  runPodman,
  runTool,
  unmountUnder,
} from '@gantry/layer-tree/testing';
import { ociTransport } from '@gantry/transport-oci';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeLayerTars, sha256OfChunks } from '../test-support/driver-interop.js';
import { createContainersStorageTransport } from '../transport.js';

const registry = new TransportRegistry([ociTransport, createContainersStorageTransport()]);

let work: string;
let layout: string;
let diffIds: string[];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'gantry-drivers-e2e-'));
  const tars = await makeLayerTars(join(work, 'tars'));
  layout = await ociLayoutFromTars(join(work, 'layout'), tars);
  diffIds = [];
  const { createReadStream } = await import('node:fs');
  for (const tar of tars) diffIds.push(await sha256OfChunks(createReadStream(tar)));
});

afterAll(async () => {
  await unmountUnder(work);
  await rm(work, { recursive: true, force: true });
});

async function mountedTree(store: { graphRoot: string; runRoot: string; driver: string }) {
  const mountPoint = (await runPodman(store, ['image', 'mount', 'gantry-test/driver:t'])).toString().trim();
  try {
    return describeTree(mountPoint, { directoryTimes: false });
  } finally {
    await runPodman(store, ['image', 'unmount', 'gantry-test/driver:t']);
  }
}

async function checkDriver(driver: string, base: string): Promise<void> {
  const ours = { graphRoot: join(base, 'ours/root'), runRoot: join(base, 'ours/run'), driver };
  const theirs = { graphRoot: join(base, 'theirs/root'), runRoot: join(base, 'theirs/run'), driver };
  const destination = `containers-storage:[${driver}@${ours.graphRoot}+${ours.runRoot}]gantry-test/driver:t`;
  await copyImage(
    registry.parseImageReference(`oci:${layout}:t`),
    registry.parseImageReference(destination),
    {
      policy: insecureAcceptAnythingPolicy(),
    },
  );
  await runSkopeo([
    '--insecure-policy',
    'copy',
    '-q',
    `oci:${layout}:t`,
    `containers-storage:[${driver}@${theirs.graphRoot}+${theirs.runRoot}]gantry-test/driver:t`,
  ]);

  const inspected = JSON.parse(
    (await runPodman(ours, ['image', 'inspect', 'gantry-test/driver:t'])).toString(),
  );
  expect(inspected[0].RootFS.Layers).toEqual(diffIds);
  const oursMounted = await mountedTree(ours);
  expect(oursMounted).toEqual(await mountedTree(theirs));
  const byPath = Object.fromEntries(oursMounted.map((entry) => [entry.path, entry]));
  expect(byPath['etc/null']).toMatchObject({ type: 'char', content: '1:3' });
  expect(byPath['etc/zero']).toMatchObject({ type: 'char', content: '1:5' });
  expect(Object.keys(byPath['etc/setuid-tool']?.xattrs ?? {})).toContain('security.capability');
  expect(byPath['etc/empty']).toBeUndefined();
  expect(byPath['etc/deep/er']).toBeUndefined();
  expect(byPath['etc/deep/new-in-opaque']).toBeDefined();

  // skopeo reads the layers back from Gantry's store (tar-split + the driver's files) with their DiffIDs.
  const out = join(base, 'out');
  await runSkopeo(['--insecure-policy', 'copy', '-q', destination, `oci:${out}:t`]);
  const index = JSON.parse((await runTool('cat', [join(out, 'index.json')])).toString());
  const manifest = JSON.parse(
    (await runTool('cat', [join(out, 'blobs/sha256', index.manifests[0].digest.slice(7))])).toString(),
  );
  const config = JSON.parse(
    (await runTool('cat', [join(out, 'blobs/sha256', manifest.config.digest.slice(7))])).toString(),
  );
  expect(config.rootfs.diff_ids).toEqual(diffIds);
}

describe("drivers end to end: Gantry writes, podman mounts the same files as for skopeo's store", () => {
  it('vfs', async () => {
    await checkDriver('vfs', join(work, 'vfs'));
  }, 300_000);

  it('overlay', async () => {
    await checkDriver('overlay', join(work, 'overlay'));
  }, 300_000);

  it('btrfs (on a loop-mounted btrfs image)', async () => {
    const base = join(work, 'btrfs');
    await mkdir(base, { recursive: true });
    const image = join(work, 'btrfs.img');
    await runTool('truncate', ['-s', '512M', image]);
    await runTool('mkfs.btrfs', ['-q', image]);
    try {
      await runTool('losetup', ['--find']);
    } catch (error) {
      throw new Error(
        `the btrfs test needs a loop device, and this machine has none: ${(error as Error).message}`,
      );
    }
    await runTool('mount', ['-o', 'loop', image, base]);
    await checkDriver('btrfs', base);
  }, 300_000);
});
