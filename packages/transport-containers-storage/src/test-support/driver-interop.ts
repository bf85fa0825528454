/**
 * Drives a storage driver and containers/storage (through skopeo) with the same hand-made layers, and
 * returns both sides for comparison: a base layer with every entry type (devices, fifos, xattrs
 * including security.capability, owners, set-uid, hard links, long and non-ASCII names) and a layer of
 * changes (replaced and deleted files, an opaque directory, a directory replaced by a file and back).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runSkopeo } from '@gantry/core/testing';
import { assembleTarChunks, type TarSplitFileGetter } from '@gantry/layer-tree';
import {
  makeChangesTree,
  makeRichTree,
  ociLayoutFromTars,
  runTool,
  tarSplitLines,
} from '@gantry/layer-tree/testing';
import type { StorageDriver, StorageDriverOptions } from '../drivers/driver.js';

export interface StoredLayerRecord {
  id: string;
  parent?: string;
  'diff-digest': string;
  'diff-size': number;
  uidset?: number[];
  gidset?: number[];
}

export interface DriverInteropResult {
  /** The layers containers/storage stored, base first. */
  layers: StoredLayerRecord[];
  /** The layer tars, base first. */
  tars: string[];
  theirGraphRoot: string;
  ourGraphRoot: string;
  ourDriver: StorageDriver;
  /** Per layer: our tar-split lines and theirs, our digest/size/uids/gids. */
  applied: Array<{
    ours: {
      digest: string;
      size: number;
      uids: number[];
      gids: number[];
      tarSplit: string[];
      tarSplitGzip: Uint8Array;
    };
    theirs: { tarSplit: string[] };
  }>;
}

/** The hand-made layer tars (GNU tar, PAX with xattrs), under `directory`. */
export async function makeLayerTars(directory: string): Promise<string[]> {
  const lower = join(directory, 'lower-tree');
  const upper = join(directory, 'upper-tree');
  await mkdir(lower, { recursive: true });
  await mkdir(upper, { recursive: true });
  await makeRichTree(lower);
  await makeChangesTree(upper);
  const tars = [join(directory, 'lower.tar'), join(directory, 'upper.tar')];
  const tarArguments = [
    '--format=pax',
    '--blocking-factor=1',
    '--xattrs',
    '--xattrs-include=*',
    '--numeric-owner',
    '--sort=name',
  ];
  await runTool('tar', [...tarArguments, '-C', lower, '-cf', tars[0] as string, '.']);
  await runTool('tar', [...tarArguments, '-C', upper, '-cf', tars[1] as string, '.']);
  return tars;
}

/** The layers of a store, base first (following the parent chain). */
export async function storedLayerChain(graphRoot: string, driver: string): Promise<StoredLayerRecord[]> {
  const records = JSON.parse(
    await readFile(join(graphRoot, `${driver}-layers/layers.json`), 'utf8'),
  ) as StoredLayerRecord[];
  const chain: StoredLayerRecord[] = [];
  let parent: string | undefined;
  for (;;) {
    const next = records.find((record) => record.parent === parent);
    if (next === undefined) break;
    chain.push(next);
    parent = next.id;
  }
  return chain;
}

export async function sha256OfChunks(chunks: AsyncIterable<Buffer>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of chunks) hash.update(chunk);
  return `sha256:${hash.digest('hex')}`;
}

/**
 * Stores the hand-made image with skopeo into `<directory>/theirs` (driver `driverName`) and applies the
 * same tars, with the same layer IDs, through `makeDriver` into `<directory>/ours`.
 */
export async function runDriverInterop(
  directory: string,
  driverName: string,
  makeDriver: (options: StorageDriverOptions) => StorageDriver,
  roots: { theirs: string; ours: string } = {
    theirs: join(directory, 'theirs'),
    ours: join(directory, 'ours'),
  },
): Promise<DriverInteropResult> {
  const tars = await makeLayerTars(directory);
  const layout = await ociLayoutFromTars(join(directory, 'layout'), tars);
  const theirGraphRoot = join(roots.theirs, 'root');
  await runSkopeo([
    '--insecure-policy',
    'copy',
    '-q',
    `oci:${layout}:t`,
    `containers-storage:[${driverName}@${theirGraphRoot}+${join(roots.theirs, 'run')}]gantry-test/driver:t`,
  ]);
  const layers = await storedLayerChain(theirGraphRoot, driverName);
  if (layers.length !== tars.length)
    throw new Error(`containers/storage stored ${layers.length} layers, expected ${tars.length}`);

  const ourGraphRoot = join(roots.ours, 'root');
  const ourDriver = makeDriver({
    graphRoot: ourGraphRoot,
    runRoot: join(roots.ours, 'run'),
    options: [],
    rootless: false,
  });
  await ourDriver.initialize();
  const applied: DriverInteropResult['applied'] = [];
  for (const [index, layer] of layers.entries()) {
    await ourDriver.createLayer(layer.id, layer.parent);
    const result = await ourDriver.applyDiff(layer.id, layer.parent, createReadStream(tars[index] as string));
    const theirTarSplit = await readFile(
      join(theirGraphRoot, `${driverName}-layers`, `${layer.id}.tar-split.gz`),
    );
    applied.push({
      ours: {
        digest: result.uncompressedDigest,
        size: result.uncompressedSize,
        uids: result.uids,
        gids: result.gids,
        tarSplit: await tarSplitLines(result.tarSplitGzip),
        tarSplitGzip: result.tarSplitGzip,
      },
      theirs: { tarSplit: await tarSplitLines(theirTarSplit) },
    });
  }
  return { layers, tars, theirGraphRoot, ourGraphRoot, ourDriver, applied };
}

/** Regenerates a layer tar from a tar-split and a driver's file getter; returns its sha256. */
export async function regeneratedDigest(
  tarSplitGzip: Uint8Array,
  driver: StorageDriver,
  id: string,
): Promise<string> {
  const getter = driver.diffFileGetter(id);
  const getFile: TarSplitFileGetter = async (name, nameBytes) => getter(name, nameBytes);
  return sha256OfChunks(assembleTarChunks(tarSplitGzip, getFile));
}
