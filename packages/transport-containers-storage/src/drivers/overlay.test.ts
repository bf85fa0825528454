import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assembleTarChunks, pathFileGetter } from '@gantry/layer-tree';
import { describeTree, unmountUnder } from '@gantry/layer-tree/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DriverInteropResult,
  regeneratedDigest,
  runDriverInterop,
  sha256OfChunks,
} from '../test-support/driver-interop.js';
import { createOverlayDriver, generateShortName, type OverlayDriver } from './overlay.js';

let work: string;
let result: DriverInteropResult;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'gantry-overlay-driver-'));
  result = await runDriverInterop(work, 'overlay', createOverlayDriver);
});

afterAll(async () => {
  await unmountUnder(work);
  await rm(work, { recursive: true, force: true });
});

function metadata(path: string): { mode: string; uid: number; gid: number; type: string } {
  const stats = lstatSync(path);
  return {
    mode: (stats.mode & 0o7777).toString(8),
    uid: stats.uid,
    gid: stats.gid,
    type: stats.isDirectory()
      ? 'directory'
      : stats.isFile()
        ? 'file'
        : stats.isSymbolicLink()
          ? 'symlink'
          : 'other',
  };
}

/** A layer directory's layout: each entry's metadata, with the short names replaced by what they point at. */
function layerLayout(home: string, id: string): Record<string, unknown> {
  const directory = join(home, id);
  const layout: Record<string, unknown> = {};
  for (const name of readdirSync(directory).sort()) layout[name] = metadata(join(directory, name));
  const shortName = readFileSync(join(directory, 'link'), 'utf8');
  expect(shortName).toMatch(/^[A-Z2-7]{26}$/);
  layout.shortLink = {
    target: readlinkSync(join(home, 'l', shortName)),
    ...metadata(join(home, 'l', shortName)),
  };
  const lower = (() => {
    try {
      return readFileSync(join(directory, 'lower'), 'utf8');
    } catch {
      return undefined;
    }
  })();
  // Each lower entry `l/<short>` resolves to a parent layer's diff: compare those, not the random names.
  layout.lower = lower?.split(':').map((entry) => readlinkSync(join(home, entry)));
  return layout;
}

describe('overlay driver against containers/storage (skopeo copy into an overlay store)', () => {
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

  it('lays out overlay/<id> (diff, link, lower, work, merged, empty) and overlay/l/<short> as containers/storage does', () => {
    const theirHome = join(result.theirGraphRoot, 'overlay');
    const ourHome = join(result.ourGraphRoot, 'overlay');
    expect(metadata(join(ourHome, 'l'))).toEqual(metadata(join(theirHome, 'l')));
    expect(metadata(ourHome).mode).toBe(metadata(theirHome).mode);
    for (const layer of result.layers)
      expect(layerLayout(ourHome, layer.id)).toEqual(layerLayout(theirHome, layer.id));
    const base = (result.layers[0] as { id: string }).id;
    expect(readdirSync(join(ourHome, base)).sort()).toEqual(['diff', 'empty', 'link', 'merged', 'work']);
  });

  it('makes the same diff directories: whiteouts as 0/0 devices, opaque directories by xattr', () => {
    const driver = result.ourDriver as OverlayDriver;
    for (const layer of result.layers) {
      const theirs = join(result.theirGraphRoot, 'overlay', layer.id, 'diff');
      expect(describeTree(driver.diffDirectory(layer.id), { directoryTimes: true })).toEqual(
        describeTree(theirs, { directoryTimes: true }),
      );
      expect(metadata(driver.diffDirectory(layer.id))).toEqual(metadata(theirs));
    }
    const upper = describeTree(driver.diffDirectory((result.layers[1] as { id: string }).id));
    expect(upper.find((entry) => entry.path === 'etc/empty')).toMatchObject({
      type: 'char',
      content: '0:0',
      mode: '0',
    });
    expect(upper.find((entry) => entry.path === 'etc/deep')?.xattrs).toEqual({
      'trusted.overlay.opaque': Buffer.from('y').toString('hex'),
    });
    expect(upper.some((entry) => entry.path.includes('.wh.'))).toBe(false);
  });

  it("regenerates each layer tar from containers/storage's own tar-split and layer files", async () => {
    for (const layer of result.layers) {
      const driverName = 'overlay';
      const tarSplit = await readFile(
        join(result.theirGraphRoot, `${driverName}-layers`, `${layer.id}.tar-split.gz`),
      );
      const digest = await sha256OfChunks(
        assembleTarChunks(tarSplit, pathFileGetter(join(result.theirGraphRoot, 'overlay', layer.id, 'diff'))),
      );
      expect(digest).toBe(layer['diff-digest']);
    }
  });

  it('regenerates each layer tar byte for byte from its tar-split and the diff directory', async () => {
    for (const [index, layer] of result.layers.entries()) {
      const tarSplit = result.applied[index]?.ours.tarSplitGzip as Uint8Array;
      expect(await regeneratedDigest(tarSplit, result.ourDriver, layer.id)).toBe(layer['diff-digest']);
    }
  });

  it('removes a layer with its short link', async () => {
    const driver = result.ourDriver as OverlayDriver;
    const top = (result.layers[1] as { id: string }).id;
    const home = join(result.ourGraphRoot, 'overlay');
    const shortName = readFileSync(join(home, top, 'link'), 'utf8');
    await driver.removeLayer(top);
    expect(await driver.layerExists(top)).toBe(false);
    expect(() => lstatSync(join(home, 'l', shortName))).toThrow();
    await driver.removeLayer(top);
  });

  it('makes 26-character base32 short names', () => {
    const names = new Set(Array.from({ length: 100 }, () => generateShortName()));
    expect(names.size).toBe(100);
    for (const name of names) expect(name).toMatch(/^[A-Z2-7]{26}$/);
  });
});
