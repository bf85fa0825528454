import { lstatSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assembleTarChunks, pathFileGetter } from '@gantry/layer-tree';
import { describeTree, runTool, unmountUnder } from '@gantry/layer-tree/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DriverInteropResult,
  regeneratedDigest,
  runDriverInterop,
  sha256OfChunks,
} from '../test-support/driver-interop.js';
import { type BtrfsDriver, createBtrfsDriver } from './btrfs.js';

let work: string;
let mountPoint: string;
let result: DriverInteropResult;

/**
 * A loop-mounted btrfs image file. Needs loop devices (and root): where the machine has none, this fails
 * saying so — the btrfs tests never pass without running.
 */
async function mountBtrfsImage(directory: string): Promise<string> {
  const image = join(directory, 'btrfs.img');
  const mounted = join(directory, 'mnt');
  await mkdir(mounted);
  await runTool('truncate', ['-s', '512M', image]);
  await runTool('mkfs.btrfs', ['-q', image]);
  try {
    await runTool('losetup', ['--find']);
  } catch (error) {
    throw new Error(
      `the btrfs driver tests need a loop device to mount a btrfs image, and this machine has none: ${(error as Error).message}`,
    );
  }
  await runTool('mount', ['-o', 'loop', image, mounted]);
  return mounted;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'gantry-btrfs-driver-'));
  mountPoint = await mountBtrfsImage(work);
  result = await runDriverInterop(work, 'btrfs', createBtrfsDriver, {
    theirs: join(mountPoint, 'theirs'),
    ours: join(mountPoint, 'ours'),
  });
});

afterAll(async () => {
  if (work === undefined) return;
  await unmountUnder(work);
  await rm(work, { recursive: true, force: true });
});

describe('btrfs driver against containers/storage (skopeo copy into a btrfs store on a loop-mounted image)', () => {
  it('records the same DiffIDs, sizes, owner sets and tar-split lines', () => {
    for (const [index, layer] of result.layers.entries()) {
      const applied = result.applied[index];
      expect(applied?.ours.digest).toBe(layer['diff-digest']);
      expect(applied?.ours.size).toBe(layer['diff-size']);
      expect(applied?.ours.uids).toEqual(layer.uidset ?? []);
      expect(applied?.ours.gids).toEqual(layer.gidset ?? []);
      expect(applied?.ours.tarSplit).toEqual(applied?.theirs.tarSplit);
    }
  });

  it('makes each layer a subvolume (children snapshots of their parent) with the same files as containers/storage', async () => {
    const driver = result.ourDriver as BtrfsDriver;
    for (const layer of result.layers) {
      const theirs = join(result.theirGraphRoot, 'btrfs/subvolumes', layer.id);
      const ours = driver.layerDirectory(layer.id);
      expect(ours).toBe(join(result.ourGraphRoot, 'btrfs/subvolumes', layer.id));
      expect(lstatSync(ours).ino).toBe(256);
      expect(describeTree(ours, { directoryTimes: true })).toEqual(
        describeTree(theirs, { directoryTimes: true }),
      );
    }
    const top = driver.layerDirectory((result.layers[1] as { id: string }).id);
    const info = (await runTool('btrfs', ['subvolume', 'show', top])).toString();
    const base = driver.layerDirectory((result.layers[0] as { id: string }).id);
    const baseUuid = /^\s*UUID:\s*(\S+)/m.exec(
      (await runTool('btrfs', ['subvolume', 'show', base])).toString(),
    )?.[1];
    expect(baseUuid).toBeDefined();
    expect(info).toMatch(new RegExp(`Parent UUID:\\s*${baseUuid}`));
  });

  it("regenerates each layer tar from containers/storage's own tar-split and layer files", async () => {
    for (const layer of result.layers) {
      const driverName = 'btrfs';
      const tarSplit = await readFile(
        join(result.theirGraphRoot, `${driverName}-layers`, `${layer.id}.tar-split.gz`),
      );
      const digest = await sha256OfChunks(
        assembleTarChunks(
          tarSplit,
          pathFileGetter(join(result.theirGraphRoot, 'btrfs/subvolumes', layer.id)),
        ),
      );
      expect(digest).toBe(layer['diff-digest']);
    }
  });

  it('regenerates each layer tar byte for byte from its tar-split and the subvolume', async () => {
    for (const [index, layer] of result.layers.entries()) {
      const tarSplit = result.applied[index]?.ours.tarSplitGzip as Uint8Array;
      expect(await regeneratedDigest(tarSplit, result.ourDriver, layer.id)).toBe(layer['diff-digest']);
    }
  });

  it('deletes the subvolumes', async () => {
    const driver = result.ourDriver;
    for (const layer of [...result.layers].reverse()) {
      await driver.removeLayer(layer.id);
      expect(await driver.layerExists(layer.id)).toBe(false);
      await driver.removeLayer(layer.id);
    }
  });

  it('refuses a graph root that is not on btrfs', async () => {
    const driver = createBtrfsDriver({
      graphRoot: join(work, 'not-btrfs'),
      runRoot: join(work, 'run'),
      options: [],
      rootless: false,
    });
    await expect(driver.initialize()).rejects.toThrow(/needs .* on a btrfs file system/);
  });
});
