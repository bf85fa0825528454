/**
 * Interop with the real tools: images Gantry writes into a store (vfs), read by podman and skopeo, and
 * images skopeo writes, read by Gantry. Every test uses its own graph root and run root.
 */
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import { type FixtureImageSpec, fixturePresets, runSkopeo } from '@gantry/core/testing';
import { parseImageConfig, TransportRegistry } from '@gantry/core/transport';
import { ociTransport } from '@gantry/transport-oci';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ImageRecord, LayerRecord } from './store.js';
import {
  createTestStore,
  fixtureLayout,
  rawLayout,
  skopeoCopy,
  type TestStore,
  tarEntry,
  tarOf,
} from './test-support/stores.js';
import { createContainersStorageTransport } from './transport.js';

const transport = createContainersStorageTransport();
const registry = new TransportRegistry([ociTransport, transport]);
const policy = insecureAcceptAnythingPolicy();

async function gantryCopy(source: string, destination: string): Promise<void> {
  await copyImage(registry.parseImageReference(source), registry.parseImageReference(destination), {
    policy,
  });
}

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

/** Every entry under `root`: type, mode, owner, size, content hash / link target. */
async function describeTree(root: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  const walk = async (directory: string, prefix: string) => {
    for (const name of (await readdir(directory)).sort()) {
      const path = join(directory, name);
      const relative = prefix ? `${prefix}/${name}` : name;
      const info = await lstat(path);
      const common = `${(info.mode & 0o7777).toString(8)} ${info.uid}:${info.gid}`;
      if (info.isDirectory()) {
        result[relative] = `dir ${common}`;
        await walk(path, relative);
      } else if (info.isSymbolicLink()) {
        result[relative] = `symlink ${await readlink(path)} ${info.uid}:${info.gid}`;
      } else if (info.isFile()) {
        const hash = createHash('sha256')
          .update(await readFile(path))
          .digest('hex');
        result[relative] = `file ${common} ${info.size} ${hash} mtime ${Math.floor(info.mtimeMs / 1000)}`;
      } else {
        result[relative] = `other ${info.mode.toString(8)} ${info.rdev}`;
      }
    }
  };
  await walk(root, '');
  return result;
}

const twoLayerOci: FixtureImageSpec = {
  ...(fixturePresets.dockerSchema2 as FixtureImageSpec),
  format: 'oci',
};

const storedLikeSkopeoPresets = [
  ['two layers', twoLayerOci],
  ['whiteouts and opaque directories', fixturePresets.whiteoutLayers as FixtureImageSpec],
  ['every entry type', fixturePresets.everyEntryType as FixtureImageSpec],
] as const;

/** The files podman shows for an image (`podman image mount`), described. */
async function mountedTree(store: TestStore, name: string): Promise<Record<string, string>> {
  const mountPoint = (await store.podman(['image', 'mount', name])).trim();
  try {
    return await describeTree(mountPoint);
  } finally {
    await store.podman(['image', 'unmount', name]);
  }
}

/**
 * Copies `spec` into `ours` with Gantry and into `theirs` with skopeo, then checks: podman lists our image
 * with skopeo's image ID; images.json and layers.json records equal skopeo's (but layer creation times);
 * every layer has its tar-split; podman's inspect shows the DiffIDs; each layer's own files (vfs: the
 * layer directory; overlay: `diff`) equal skopeo's; and podman mounts the same files for both.
 */
async function expectStoredLikeSkopeo(
  ours: TestStore,
  theirs: TestStore,
  spec: FixtureImageSpec,
): Promise<void> {
  const driver = ours.driver;
  const { image, reference } = await fixtureLayout(ours.directory, 'layout', spec);
  await gantryCopy(reference, `containers-storage:${ours.specification}x:t`);
  await skopeoCopy(reference, `containers-storage:${theirs.specification}x:t`);

  const imageId = image.images[0]!.configDigest.slice('sha256:'.length);
  const listed = JSON.parse(await ours.podman(['images', '--format', 'json']));
  expect(listed).toHaveLength(1);
  expect(listed[0].Id).toBe(imageId);
  expect(listed[0].Names).toEqual(['docker.io/library/x:t']);

  const ourImages = await readJson<ImageRecord[]>(join(ours.graphRoot, `${driver}-images`, 'images.json'));
  const theirImages = await readJson<ImageRecord[]>(
    join(theirs.graphRoot, `${driver}-images`, 'images.json'),
  );
  expect(ourImages).toEqual(theirImages);

  const ourLayers = await readJson<LayerRecord[]>(join(ours.graphRoot, `${driver}-layers`, 'layers.json'));
  const theirLayers = await readJson<LayerRecord[]>(
    join(theirs.graphRoot, `${driver}-layers`, 'layers.json'),
  );
  const comparable = (layer: LayerRecord) => ({ ...layer, created: undefined });
  expect(ourLayers.map(comparable)).toEqual(theirLayers.map(comparable));
  for (const layer of ourLayers) {
    await readFile(join(ours.graphRoot, `${driver}-layers`, `${layer.id}.tar-split.gz`));
  }

  const inspected = JSON.parse(await ours.podman(['image', 'inspect', 'x:t']));
  expect(inspected[0].RootFS.Layers).toEqual(image.images[0]!.diffIds);

  for (const layer of ourLayers) {
    const own = (root: string) =>
      driver === 'vfs'
        ? join(root, 'vfs', 'dir', layer.id)
        : join(
            root,
            driver === 'overlay' ? 'overlay' : 'btrfs/subvolumes',
            layer.id,
            driver === 'overlay' ? 'diff' : '',
          );
    expect(await describeTree(own(ours.graphRoot))).toEqual(await describeTree(own(theirs.graphRoot)));
  }
  expect(await mountedTree(ours, 'x:t')).toEqual(await mountedTree(theirs, 'x:t'));
}

describe('containers-storage (vfs) with podman and skopeo', () => {
  let ours: TestStore;
  let theirs: TestStore;

  beforeEach(async () => {
    ours = await createTestStore('vfs');
    theirs = await createTestStore('vfs');
  });
  afterEach(async () => {
    await ours.dispose();
    await theirs.dispose();
  });

  for (const [presetName, spec] of storedLikeSkopeoPresets) {
    it(`stores ${presetName} as skopeo does: same image ID, layers, records and files`, async () => {
      await expectStoredLikeSkopeo(ours, theirs, spec);
    }, 180_000);
  }

  it('is read back by skopeo with the original config and DiffIDs', async () => {
    const { image, reference } = await fixtureLayout(
      ours.directory,
      'layout',
      fixturePresets.whiteoutLayers as FixtureImageSpec,
    );
    await gantryCopy(reference, `containers-storage:${ours.specification}x:t`);
    const out = join(ours.directory, 'out');
    await skopeoCopy(`containers-storage:${ours.specification}x:t`, `oci:${out}:t`);
    const index = await readJson<{ manifests: Array<{ digest: string }> }>(join(out, 'index.json'));
    const manifest = await readJson<{ config: { digest: string } }>(
      join(out, 'blobs', 'sha256', index.manifests[0]!.digest.slice(7)),
    );
    expect(manifest.config.digest).toBe(image.images[0]!.configDigest);
    const config = parseImageConfig(
      await readFile(join(out, 'blobs', 'sha256', manifest.config.digest.slice(7))),
    );
    expect(config.rootfs?.diff_ids).toEqual(image.images[0]!.diffIds);
  }, 180_000);

  it('copies out an image skopeo stored, layers rebuilt with their original DiffIDs', async () => {
    const { image, reference } = await fixtureLayout(
      theirs.directory,
      'layout',
      fixturePresets.everyEntryType as FixtureImageSpec,
    );
    await skopeoCopy(reference, `containers-storage:${theirs.specification}y:t`);
    const out = join(theirs.directory, 'out');
    await gantryCopy(`containers-storage:${theirs.specification}y:t`, `oci:${out}:t`);
    // The config is the original; skopeo copies our output (verifying every blob) and finds the DiffIDs.
    const config = JSON.parse((await runSkopeo(['inspect', '--config', `oci:${out}:t`])).toString());
    expect(config.rootfs?.diff_ids).toEqual(image.images[0]!.diffIds);
    const manifest = JSON.parse((await runSkopeo(['inspect', '--raw', `oci:${out}:t`])).toString());
    expect(manifest.config.digest).toBe(image.images[0]!.configDigest);
    await skopeoCopy(`oci:${out}:t`, `containers-storage:${ours.specification}back:t`);
    const listed = JSON.parse(await ours.podman(['image', 'inspect', 'back:t']));
    expect(listed[0].Id).toBe(image.images[0]!.configDigest.slice(7));
  }, 180_000);

  it('deletes an image and the layers no other image uses', async () => {
    const base: FixtureImageSpec = {
      format: 'oci',
      layers: [{ entries: [{ type: 'file', path: 'base', content: 'b\n' }] }],
    };
    const a = await fixtureLayout(ours.directory, 'a', {
      ...base,
      layers: [...base.layers, { entries: [{ type: 'file', path: 'a', content: 'a\n' }] }],
    });
    const b = await fixtureLayout(ours.directory, 'b', {
      ...base,
      layers: [...base.layers, { entries: [{ type: 'file', path: 'b', content: 'b\n' }] }],
    });
    await gantryCopy(a.reference, `containers-storage:${ours.specification}a:t`);
    await gantryCopy(b.reference, `containers-storage:${ours.specification}b:t`);
    expect(await readJson<LayerRecord[]>(join(ours.graphRoot, 'vfs-layers', 'layers.json'))).toHaveLength(3);
    await registry.parseImageReference(`containers-storage:${ours.specification}a:t`).deleteImage();
    const layers = await readJson<LayerRecord[]>(join(ours.graphRoot, 'vfs-layers', 'layers.json'));
    expect(layers).toHaveLength(2);
    const listed = JSON.parse(await ours.podman(['images', '--format', 'json']));
    expect(listed.map((entry: { Names: string[] }) => entry.Names)).toEqual([['docker.io/library/b:t']]);
    await expect(
      registry.parseImageReference(`containers-storage:${ours.specification}a:t`).deleteImage(),
    ).rejects.toMatchObject({ code: 'ERR_GANTRY_IMAGE_NOT_FOUND' });
    await registry.parseImageReference(`containers-storage:${ours.specification}b:t`).deleteImage();
    expect(await readJson<LayerRecord[]>(join(ours.graphRoot, 'vfs-layers', 'layers.json'))).toEqual([]);
    expect(await readdir(join(ours.graphRoot, 'vfs', 'dir'))).toEqual([]);
    expect(await ours.podman(['images', '-q'])).toBe('');
  }, 180_000);

  it('moves a name to the image copied last, as podman re-tags', async () => {
    const a = await fixtureLayout(ours.directory, 'a', fixturePresets.ociMinimal as FixtureImageSpec);
    const b = await fixtureLayout(ours.directory, 'b', twoLayerOci);
    await gantryCopy(a.reference, `containers-storage:${ours.specification}x:t`);
    await gantryCopy(b.reference, `containers-storage:${ours.specification}x:t`);
    const images = await readJson<ImageRecord[]>(join(ours.graphRoot, 'vfs-images', 'images.json'));
    const byId = new Map(images.map((record) => [record.id, record]));
    expect(byId.get(b.image.images[0]!.configDigest.slice(7))?.names).toEqual(['docker.io/library/x:t']);
    expect(byId.get(a.image.images[0]!.configDigest.slice(7))?.names).toBeUndefined();
    // -a: the first image is the second's parent (podman hides such intermediate images by default).
    const listed = JSON.parse(await ours.podman(['images', '-a', '--format', 'json']));
    expect(listed).toHaveLength(2);
  }, 180_000);

  it('stores the instance for this platform when the source is a list', async () => {
    const { image, reference } = await fixtureLayout(
      ours.directory,
      'list',
      fixturePresets.multiArchOci as FixtureImageSpec,
    );
    await gantryCopy(reference, `containers-storage:${ours.specification}multi:t`);
    const inspected = JSON.parse(await ours.podman(['image', 'inspect', 'multi:t']));
    const chosen = image.images.find((single) => single.configDigest.slice(7) === inspected[0].Id);
    expect(chosen?.platform.architecture).toBe(process.arch === 'x64' ? 'amd64' : process.arch);
  }, 120_000);

  it('stores the image chosen from a list as skopeo does, found by the list digest too', async () => {
    const { image, reference } = await fixtureLayout(
      ours.directory,
      'list',
      fixturePresets.multiArchOci as FixtureImageSpec,
    );
    await gantryCopy(reference, `containers-storage:${ours.specification}multi:t`);
    await skopeoCopy(reference, `containers-storage:${theirs.specification}multi:t`);
    // The same image record: the list kept as big data `manifest-<list digest>` beside the instance.
    const ourImages = await readJson<ImageRecord[]>(join(ours.graphRoot, 'vfs-images', 'images.json'));
    const theirImages = await readJson<ImageRecord[]>(join(theirs.graphRoot, 'vfs-images', 'images.json'));
    expect(ourImages).toEqual(theirImages);
    const listDigest = image.topLevel.digest;
    expect(ourImages[0]!['big-data-names']).toContain(`manifest-${listDigest}`);
    const chosen = image.images.find((single) => single.configDigest.slice(7) === ourImages[0]!.id)!;
    // As containers/storage: the image's digest is the first manifest stored with it, the list's.
    expect(ourImages[0]!.digest).toBe(listDigest);
    expect(ourImages[0]!['big-data-digests']!.manifest).toBe(chosen.manifestDigest);

    // podman finds the image by the list's digest and by the instance's.
    for (const store of [ours, theirs]) {
      for (const digest of [listDigest, chosen.manifestDigest]) {
        const inspected = JSON.parse(await store.podman(['image', 'inspect', `multi@${digest}`]));
        expect(inspected[0].Id).toBe(ourImages[0]!.id);
      }
    }
    // Read back by the list's digest: the list, then the stored instance, with its original DiffIDs.
    for (const [tool, copy] of [
      ['gantry', gantryCopy],
      ['skopeo', (source: string, destination: string) => skopeoCopy(source, destination)],
    ] as const) {
      const out = join(ours.directory, `out-${tool}`);
      await copy(`containers-storage:${ours.specification}multi@${listDigest}`, `oci:${out}:t`);
      const index = await readJson<{ manifests: Array<{ digest: string }> }>(join(out, 'index.json'));
      const manifest = await readJson<{ config: { digest: string } }>(
        join(out, 'blobs', 'sha256', index.manifests[0]!.digest.slice(7)),
      );
      expect(manifest.config.digest).toBe(chosen.configDigest);
      const config = parseImageConfig(
        await readFile(join(out, 'blobs', 'sha256', chosen.configDigest.slice(7))),
      );
      expect(config.rootfs?.diff_ids).toEqual(chosen.diffIds);
    }
  }, 180_000);

  it('refuses to copy every image of a list (--all) as skopeo does, storing nothing', async () => {
    const { reference } = await fixtureLayout(
      ours.directory,
      'list',
      fixturePresets.multiArchOci as FixtureImageSpec,
    );
    const skopeoFailure = await skopeoCopy(reference, `containers-storage:${theirs.specification}multi:t`, [
      '--all',
    ]).then(
      () => undefined,
      (error: Error) => error.message,
    );
    expect(skopeoFailure).toMatch(/does not support copying multiple images as a group/);
    await expect(
      copyImage(
        registry.parseImageReference(reference),
        registry.parseImageReference(`containers-storage:${ours.specification}multi:t`),
        { policy, imageListSelection: 'all' },
      ),
    ).rejects.toThrow(
      'copying multiple images: destination transport "containers-storage" does not support copying multiple images as a group',
    );
    expect(await ours.podman(['images', '-q'])).toBe('');
    expect(JSON.parse(await ours.podman(['images', '-a', '--format', 'json']))).toEqual([]);
  }, 180_000);

  it('refuses to delete an image a container uses, and keeps it', async () => {
    const a = await fixtureLayout(ours.directory, 'a', fixturePresets.ociMinimal as FixtureImageSpec);
    await gantryCopy(a.reference, `containers-storage:${ours.specification}x:t`);
    await ours.podman(['create', '--name', 'user-of-x', 'x:t', '/bin/true']);
    await expect(
      registry.parseImageReference(`containers-storage:${ours.specification}x:t`).deleteImage(),
    ).rejects.toThrow(/in use by container/);
    expect(JSON.parse(await ours.podman(['images', '--format', 'json']))).toHaveLength(1);
    await ours.podman(['rm', 'user-of-x']);
    await registry.parseImageReference(`containers-storage:${ours.specification}x:t`).deleteImage();
    expect(await ours.podman(['images', '-q'])).toBe('');
  }, 120_000);

  it('reports a missing image as ERR_GANTRY_IMAGE_NOT_FOUND', async () => {
    await expect(
      registry.parseImageReference(`containers-storage:${ours.specification}nothing:here`).newImageSource(),
    ).rejects.toMatchObject({ code: 'ERR_GANTRY_IMAGE_NOT_FOUND' });
    const a = await fixtureLayout(ours.directory, 'a', fixturePresets.ociMinimal as FixtureImageSpec);
    await gantryCopy(a.reference, `containers-storage:${ours.specification}x:t`);
    await expect(
      registry.parseImageReference(`containers-storage:${ours.specification}x:other`).newImageSource(),
    ).rejects.toMatchObject({ code: 'ERR_GANTRY_IMAGE_NOT_FOUND' });
  }, 120_000);

  it('names a corrupt layers.json', async () => {
    const a = await fixtureLayout(ours.directory, 'a', fixturePresets.ociMinimal as FixtureImageSpec);
    await gantryCopy(a.reference, `containers-storage:${ours.specification}x:t`);
    const file = join(ours.graphRoot, 'vfs-layers', 'layers.json');
    await writeFile(file, '[{"id": "abc",');
    await expect(
      gantryCopy(`containers-storage:${ours.specification}x:t`, `oci:${join(ours.directory, 'o')}:t`),
    ).rejects.toMatchObject({ code: 'ERR_GANTRY_INVALID_LAYOUT', message: expect.stringContaining(file) });
  }, 120_000);

  it('removes a layer left incomplete by an interrupted writer, as containers/storage does', async () => {
    const a = await fixtureLayout(ours.directory, 'a', fixturePresets.ociMinimal as FixtureImageSpec);
    await gantryCopy(a.reference, `containers-storage:${ours.specification}x:t`);
    const file = join(ours.graphRoot, 'vfs-layers', 'layers.json');
    const layers = await readJson<LayerRecord[]>(file);
    const broken = 'f'.repeat(64);
    layers.push({ id: broken, created: new Date().toISOString(), flags: { incomplete: true } });
    await writeFile(file, JSON.stringify(layers));
    const b = await fixtureLayout(ours.directory, 'b', twoLayerOci);
    await gantryCopy(b.reference, `containers-storage:${ours.specification}y:t`);
    const after = await readJson<LayerRecord[]>(file);
    expect(after.some((layer) => layer.id === broken)).toBe(false);
    expect(after.some((layer) => layer.flags?.incomplete)).toBe(false);
    expect(JSON.parse(await ours.podman(['images', '--format', 'json']))).toHaveLength(2);
  }, 120_000);

  it('leaves no image and no layer when a layer fails mid-way', async () => {
    const { image, layout } = await fixtureLayout(ours.directory, 'layout', twoLayerOci);
    // Corrupt the second layer's blob after the first: its digest no longer matches.
    const layerBlobs = [...image.blobs.values()].filter((blob) => blob.mediaType.includes('layer'));
    const second = layerBlobs[1];
    expect(second).toBeDefined();
    const path = join(layout, 'blobs', 'sha256', second!.digest.slice(7));
    const bytes = await readFile(path);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 5) ^ 0xff, bytes.length - 5);
    await writeFile(path, bytes);
    await expect(
      gantryCopy(`oci:${layout}:t`, `containers-storage:${ours.specification}x:t`),
    ).rejects.toThrow();
    const layers = await readJson<LayerRecord[]>(join(ours.graphRoot, 'vfs-layers', 'layers.json')).catch(
      () => [],
    );
    expect(layers).toEqual([]);
    expect(await ours.podman(['images', '-q'])).toBe('');
  }, 120_000);

  it('removes the layers it created when a later layer fails to apply, and leaves the store usable', async () => {
    const layout = await rawLayout(ours.directory, 'broken', [
      tarOf(tarEntry('good.txt', 'good\n')),
      // A valid gzip stream whose content is not a tar.
      Buffer.concat([Buffer.from('this is not a tar archive'), Buffer.alloc(2000, 1)]),
    ]);
    await expect(
      gantryCopy(`oci:${layout}:t`, `containers-storage:${ours.specification}x:t`),
    ).rejects.toThrow();
    expect(await readJson<LayerRecord[]>(join(ours.graphRoot, 'vfs-layers', 'layers.json'))).toEqual([]);
    expect(await readdir(join(ours.graphRoot, 'vfs', 'dir'))).toEqual([]);
    expect(await ours.podman(['images', '-q'])).toBe('');
  }, 120_000);

  it('writes nothing outside the layer for hostile entries (.., absolute paths, symlink and hardlink escapes)', async () => {
    const victim = join(ours.directory, 'victim');
    for (const [label, tar] of [
      ['dot-dot', tarOf(tarEntry('../../../victim', 'pwned\n'))],
      ['absolute', tarOf(tarEntry(`${victim}`, 'pwned\n'))],
      ['symlink', tarOf(tarEntry('link', '', '2', ours.directory), tarEntry('link/victim', 'pwned\n'))],
      ['hardlink', tarOf(tarEntry('hard', '', '1', victim))],
    ] as const) {
      const layout = await rawLayout(ours.directory, `hostile-${label}`, [tar]);
      await gantryCopy(`oci:${layout}:t`, `containers-storage:${ours.specification}${label}:t`).catch(
        () => undefined,
      );
      await expect(lstat(victim), label).rejects.toMatchObject({ code: 'ENOENT' });
    }
    const layers = await readJson<LayerRecord[]>(join(ours.graphRoot, 'vfs-layers', 'layers.json')).catch(
      () => [],
    );
    expect(layers.some((layer) => layer.flags?.incomplete)).toBe(false);
  }, 120_000);

  it('copies a layer with file names that are not UTF-8 in and out, with the original DiffID', async () => {
    // Latin-1 "é" and a lone 0xff byte: not UTF-8; the tar-split keeps them as name_raw.
    const latin1Name = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2e, 0x74, 0x78, 0x74]);
    const directoryName = Buffer.from([0x64, 0x69, 0x72, 0xff, 0x2f]);
    const nested = Buffer.concat([directoryName, Buffer.from('inner.bin')]);
    const layer = tarOf(
      tarEntry(latin1Name, 'not utf-8\n'),
      tarEntry(directoryName, '', '5'),
      tarEntry(nested, Buffer.alloc(3000, 7)),
      tarEntry('plain.txt', 'plain\n'),
    );
    const diffId = `sha256:${createHash('sha256').update(layer).digest('hex')}`;
    const layout = await rawLayout(ours.directory, 'non-utf8', [layer]);
    await gantryCopy(`oci:${layout}:t`, `containers-storage:${ours.specification}raw:t`);
    const stored = await readdir(join(ours.graphRoot, 'vfs', 'dir', diffId.slice(7)), { encoding: 'buffer' });
    expect(stored.some((name) => name.equals(latin1Name))).toBe(true);
    const out = join(ours.directory, 'non-utf8-out');
    await gantryCopy(`containers-storage:${ours.specification}raw:t`, `oci:${out}:t`);
    const blob = async (digest: string) => readFile(join(out, 'blobs', 'sha256', digest.slice(7)));
    const index = JSON.parse((await readFile(join(out, 'index.json'))).toString());
    const manifest = JSON.parse((await blob(index.manifests[0].digest)).toString());
    const config = parseImageConfig(await blob(manifest.config.digest));
    expect(config.rootfs?.diff_ids).toEqual([diffId]);
    const { gunzipSync } = await import('node:zlib');
    const copiedOut = await blob(manifest.layers[0].digest);
    const uncompressed = manifest.layers[0].mediaType.endsWith('gzip') ? gunzipSync(copiedOut) : copiedOut;
    expect(`sha256:${createHash('sha256').update(uncompressed).digest('hex')}`).toBe(diffId);
  }, 120_000);

  it('stores one image once when two copies of it run at the same time', async () => {
    const a = await fixtureLayout(ours.directory, 'a', twoLayerOci);
    await Promise.all([
      gantryCopy(a.reference, `containers-storage:${ours.specification}one:t`),
      gantryCopy(a.reference, `containers-storage:${ours.specification}two:t`),
    ]);
    const images = await readJson<ImageRecord[]>(join(ours.graphRoot, 'vfs-images', 'images.json'));
    expect(images).toHaveLength(1);
    expect(images[0]!.names?.sort()).toEqual(['docker.io/library/one:t', 'docker.io/library/two:t']);
    expect(await readJson<LayerRecord[]>(join(ours.graphRoot, 'vfs-layers', 'layers.json'))).toHaveLength(2);
  }, 120_000);

  it('keeps the store consistent under two Gantry copies and a podman pull at once', async () => {
    const a = await fixtureLayout(ours.directory, 'a', twoLayerOci);
    const b = await fixtureLayout(ours.directory, 'b', fixturePresets.whiteoutLayers as FixtureImageSpec);
    const c = await fixtureLayout(ours.directory, 'c', fixturePresets.everyEntryType as FixtureImageSpec);
    await Promise.all([
      gantryCopy(a.reference, `containers-storage:${ours.specification}a:t`),
      gantryCopy(b.reference, `containers-storage:${ours.specification}b:t`),
      ours.podman(['pull', '-q', c.reference]),
    ]);
    const listed = JSON.parse(await ours.podman(['images', '--format', 'json']));
    expect(listed).toHaveLength(3);
    const layers = await readJson<LayerRecord[]>(join(ours.graphRoot, 'vfs-layers', 'layers.json'));
    expect(layers.some((layer) => layer.flags?.incomplete)).toBe(false);
    for (const name of ['a:t', 'b:t']) {
      const inspected = JSON.parse(await ours.podman(['image', 'inspect', name]));
      expect(inspected[0].RootFS.Layers.length).toBeGreaterThan(0);
    }
    // Gantry reads the image podman pulled, too.
    await gantryCopy(
      `containers-storage:${ours.specification}${c.image.images[0]!.configDigest.slice(7)}`,
      `oci:${join(ours.directory, 'out')}:t`,
    );
  }, 240_000);
});

describe('containers-storage (overlay) with podman and skopeo', () => {
  let ours: TestStore;
  let theirs: TestStore;

  beforeEach(async () => {
    ours = await createTestStore('overlay');
    theirs = await createTestStore('overlay');
  });
  afterEach(async () => {
    await ours.dispose();
    await theirs.dispose();
  });

  for (const [presetName, spec] of storedLikeSkopeoPresets) {
    it(`stores ${presetName} as skopeo does: same image ID, layers, records and files`, async () => {
      await expectStoredLikeSkopeo(ours, theirs, spec);
    }, 180_000);
  }

  it('is read back by skopeo, and copies out what skopeo stored, with the original DiffIDs', async () => {
    const { image, reference } = await fixtureLayout(
      ours.directory,
      'layout',
      fixturePresets.whiteoutLayers as FixtureImageSpec,
    );
    await gantryCopy(reference, `containers-storage:${ours.specification}x:t`);
    await skopeoCopy(reference, `containers-storage:${theirs.specification}x:t`);
    const fromOurs = join(ours.directory, 'out');
    await skopeoCopy(`containers-storage:${ours.specification}x:t`, `oci:${fromOurs}:t`);
    const fromTheirs = join(theirs.directory, 'out');
    await gantryCopy(`containers-storage:${theirs.specification}x:t`, `oci:${fromTheirs}:t`);
    for (const out of [fromOurs, fromTheirs]) {
      const config = JSON.parse((await runSkopeo(['inspect', '--config', `oci:${out}:t`])).toString());
      expect(config.rootfs?.diff_ids).toEqual(image.images[0]!.diffIds);
      const manifest = JSON.parse((await runSkopeo(['inspect', '--raw', `oci:${out}:t`])).toString());
      expect(manifest.config.digest).toBe(image.images[0]!.configDigest);
    }
  }, 180_000);
});

describe('containers-storage (btrfs, loop-mounted) with podman and skopeo', () => {
  let ours: TestStore;
  let theirs: TestStore;

  beforeEach(async () => {
    ours = await createTestStore('btrfs');
    theirs = await createTestStore('btrfs');
  }, 60_000);
  afterEach(async () => {
    await ours.dispose();
    await theirs.dispose();
  }, 60_000);

  it('stores whiteouts and opaque directories as skopeo does: same image ID, layers, records and files', async () => {
    await expectStoredLikeSkopeo(ours, theirs, fixturePresets.whiteoutLayers as FixtureImageSpec);
  }, 180_000);

  it('is read back by skopeo with the original config and DiffIDs', async () => {
    const { image, reference } = await fixtureLayout(ours.directory, 'layout', twoLayerOci);
    await gantryCopy(reference, `containers-storage:${ours.specification}x:t`);
    const out = join(ours.directory, 'out');
    await skopeoCopy(`containers-storage:${ours.specification}x:t`, `oci:${out}:t`);
    const config = JSON.parse((await runSkopeo(['inspect', '--config', `oci:${out}:t`])).toString());
    expect(config.rootfs?.diff_ids).toEqual(image.images[0]!.diffIds);
  }, 180_000);
});
