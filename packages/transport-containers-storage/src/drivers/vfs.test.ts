import { lstatSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeTree, unmountUnder } from '@gantry/layer-tree/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DriverInteropResult,
  regeneratedDigest,
  runDriverInterop,
} from '../test-support/driver-interop.js';
import { createVfsDriver, type VfsDriver } from './vfs.js';

let work: string;
let result: DriverInteropResult;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'gantry-vfs-driver-'));
  result = await runDriverInterop(work, 'vfs', createVfsDriver);
});

afterAll(async () => {
  await unmountUnder(work);
  await rm(work, { recursive: true, force: true });
});

function rootMetadata(path: string): { mode: string; uid: number; gid: number } {
  const stats = lstatSync(path);
  return { mode: (stats.mode & 0o7777).toString(8), uid: stats.uid, gid: stats.gid };
}

describe('vfs driver against containers/storage (skopeo copy into a vfs store)', () => {
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

  it('makes the same layer directories: files, owners, modes, times, xattrs, devices, hard links, whiteouts applied', () => {
    const driver = result.ourDriver as VfsDriver;
    for (const layer of result.layers) {
      const theirs = join(result.theirGraphRoot, 'vfs/dir', layer.id);
      const ours = driver.layerDirectory(layer.id);
      expect(ours).toBe(join(result.ourGraphRoot, 'vfs/dir', layer.id));
      expect(describeTree(ours, { directoryTimes: true })).toEqual(
        describeTree(theirs, { directoryTimes: true }),
      );
      expect(rootMetadata(ours)).toEqual(rootMetadata(theirs));
    }
    const base = describeTree(driver.layerDirectory((result.layers[0] as { id: string }).id));
    expect(base.find((entry) => entry.path === 'etc/null')).toMatchObject({
      type: 'char',
      content: '1:3',
      mode: '644',
    });
    expect(base.find((entry) => entry.path === 'etc/fifo')).toMatchObject({ type: 'fifo' });
    expect(base.find((entry) => entry.path === 'etc/owned')).toMatchObject({ uid: 1000, gid: 1001 });
    const tool = base.find((entry) => entry.path === 'etc/setuid-tool');
    expect(tool?.mode).toBe('4755');
    expect(Object.keys(tool?.xattrs ?? {})).toContain('security.capability');
    expect(base.find((entry) => entry.path === 'etc/hosts')?.xattrs).toEqual({
      'user.comment': Buffer.from('hello').toString('hex'),
    });
    expect(base.find((entry) => entry.path === 'etc/hosts-hardlink')?.hardlinkGroup).toBe('etc/hosts');
    const top = driver.layerDirectory((result.layers[1] as { id: string }).id);
    const topTree = describeTree(top);
    expect(topTree.find((entry) => entry.path === 'etc/zero')).toMatchObject({
      type: 'char',
      content: '1:5',
    });
    expect(topTree.find((entry) => entry.path === 'home')).toMatchObject({ type: 'file' });
    expect(topTree.find((entry) => entry.path === 'etc/owned')).toMatchObject({ type: 'directory' });
    const paths = topTree.map((entry) => entry.path);
    expect(paths).not.toContain('etc/empty');
    expect(paths).toContain('etc/deep/new-in-opaque');
    expect(paths).not.toContain('etc/deep/er');
    expect(paths.some((path) => path.includes('.wh.'))).toBe(false);
  });

  it('regenerates each layer tar byte for byte from its tar-split and the layer directory', async () => {
    for (const [index, layer] of result.layers.entries()) {
      const tarSplit = result.applied[index]?.ours.tarSplitGzip as Uint8Array;
      expect(await regeneratedDigest(tarSplit, result.ourDriver, layer.id)).toBe(layer['diff-digest']);
    }
  });

  it('removes a layer (idempotently) and says whether one exists', async () => {
    const driver = result.ourDriver;
    const top = (result.layers[1] as { id: string }).id;
    expect(await driver.layerExists(top)).toBe(true);
    await driver.removeLayer(top);
    expect(await driver.layerExists(top)).toBe(false);
    await driver.removeLayer(top);
    await expect(driver.createLayer('../escape', undefined)).rejects.toThrow(/not a layer ID/);
  });
});
