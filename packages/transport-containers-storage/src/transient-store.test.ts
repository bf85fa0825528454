/**
 * Transient stores (storage.conf `transient_store = true`) and volatile layers, laid out as
 * containers/storage 1.45+ keeps them (layers.go, containers.go, store.go): container layers' records in
 * `volatile-layers.json` (in `<runroot>/<driver>-layers/` for a transient store, else beside layers.json),
 * containers in `volatile-containers.json` with `containers.lock` in `<runroot>/<driver>-containers/` for
 * a transient store. Debian's podman 4.3 (containers/storage 1.43) predates transient stores, so the
 * volatile records here are written by the test in that format; podman 4.3 still checks that the image
 * part of the store (layers.json, images.json in the graph root) is what it reads.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import { type FixtureImageSpec, fixturePresets } from '@gantry/core/testing';
import { TransportRegistry } from '@gantry/core/transport';
import { ociTransport } from '@gantry/transport-oci';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ImageRecord, LayerRecord } from './store.js';
import { createTestStore, fixtureLayout, type TestStore } from './test-support/stores.js';
import { createContainersStorageTransport } from './transport.js';

const policy = insecureAcceptAnythingPolicy();
const twoLayers: FixtureImageSpec = { ...(fixturePresets.dockerSchema2 as FixtureImageSpec), format: 'oci' };
const containerLayerId = 'c'.repeat(64);
const containerId = 'd'.repeat(64);

let store: TestStore;
let savedStorageConf: string | undefined;

beforeEach(async () => {
  store = await createTestStore('vfs');
  savedStorageConf = process.env.CONTAINERS_STORAGE_CONF;
});
afterEach(async () => {
  if (savedStorageConf === undefined) delete process.env.CONTAINERS_STORAGE_CONF;
  else process.env.CONTAINERS_STORAGE_CONF = savedStorageConf;
  await store.dispose();
});

/** Makes the test store the default one (`containers-storage:name`), transient or not. */
async function useAsDefaultStore(transient: boolean): Promise<TransportRegistry> {
  const file = join(store.directory, 'default-storage.conf');
  await writeFile(
    file,
    `[storage]\ndriver = "vfs"\ngraphroot = "${store.graphRoot}"\nrunroot = "${store.runRoot}"\ntransient_store = ${transient}\n`,
  );
  process.env.CONTAINERS_STORAGE_CONF = file;
  return new TransportRegistry([ociTransport, createContainersStorageTransport()]);
}

async function copy(registry: TransportRegistry, source: string, destination: string): Promise<void> {
  await copyImage(registry.parseImageReference(source), registry.parseImageReference(destination), {
    policy,
  });
}

async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

const graphLayersJson = () => join(store.graphRoot, 'vfs-layers', 'layers.json');
const imagesJson = () => join(store.graphRoot, 'vfs-images', 'images.json');

/** A container's layer on top of `parent`, as containers/storage records a volatile one, with its vfs directory. */
async function addVolatileLayer(file: string, parent: string, flags?: Record<string, unknown>) {
  const record: LayerRecord = {
    id: containerLayerId,
    parent,
    created: '2026-01-02T03:04:05.123456789Z',
    ...(flags ? { flags } : {}),
  };
  await mkdir(join(file, '..'), { recursive: true });
  const text = JSON.stringify([record]);
  await writeFile(file, text);
  await mkdir(join(store.graphRoot, 'vfs', 'dir', containerLayerId), { recursive: true });
  return text;
}

async function addContainer(directory: string, file: string, image: string) {
  await mkdir(directory, { recursive: true });
  await writeFile(
    join(directory, file),
    JSON.stringify([
      {
        id: containerId,
        names: ['a-container'],
        image,
        layer: containerLayerId,
        metadata: '{}',
        created: '2026-01-02T03:04:05.123456789Z',
      },
    ]),
  );
}

describe('containers-storage: transient stores and volatile layers', () => {
  it('in a transient store, keeps image layers in the graph root, reads the run root volatile records and leaves them as they are', async () => {
    const registry = await useAsDefaultStore(true);
    const { reference } = await fixtureLayout(store.directory, 'layout', twoLayers);
    await copy(registry, reference, 'containers-storage:x:t');

    const layers = await readJson<LayerRecord[]>(graphLayersJson());
    expect(layers).toHaveLength(2);
    const [image] = await readJson<ImageRecord[]>(imagesJson());
    const top = image!.layer!;
    expect(layers.map((layer) => layer.id)).toContain(top);
    // podman 4.3 reads the image part of the store where a transient store keeps it.
    expect(await store.podman(['images', '--no-trunc', '--format', '{{.ID}}'])).toContain(image!.id);

    // A container made in the transient store: its layer and record in the run root.
    const volatileLayers = join(store.runRoot, 'vfs-layers', 'volatile-layers.json');
    const volatileText = await addVolatileLayer(volatileLayers, top);
    await addContainer(join(store.runRoot, 'vfs-containers'), 'volatile-containers.json', image!.id);

    await expect(registry.parseImageReference('containers-storage:x:t').deleteImage()).rejects.toThrow(
      `image ${image!.id} is in use by container ${containerId}`,
    );

    // Another image written: layers.json changes, the volatile file is not rewritten.
    const { reference: other } = await fixtureLayout(store.directory, 'other', {
      ...(fixturePresets.everyEntryType as FixtureImageSpec),
      format: 'oci',
    });
    await copy(registry, other, 'containers-storage:y:t');
    expect(await readFile(volatileLayers, 'utf8')).toBe(volatileText);
    expect(existsSync(join(store.graphRoot, 'vfs-layers', 'volatile-layers.json'))).toBe(false);
    expect((await readJson<LayerRecord[]>(graphLayersJson())).length).toBeGreaterThan(2);

    // The container gone but its layer still there: the image goes, the layer under it stays.
    await writeFile(join(store.runRoot, 'vfs-containers', 'volatile-containers.json'), '[]');
    await registry.parseImageReference('containers-storage:x:t').deleteImage();
    const remaining = (await readJson<LayerRecord[]>(graphLayersJson())).map((layer) => layer.id);
    expect(remaining).toContain(top);
    expect(remaining).toEqual(expect.arrayContaining(layers.map((layer) => layer.id)));
    expect(await readFile(volatileLayers, 'utf8')).toBe(volatileText);
    expect((await readJson<ImageRecord[]>(imagesJson())).map((record) => record.names)).toEqual([
      ['docker.io/library/y:t'],
    ]);
  });

  it('removes a volatile layer left incomplete in a transient store at the next write, from the run root file only', async () => {
    const registry = await useAsDefaultStore(true);
    const { reference } = await fixtureLayout(store.directory, 'layout', twoLayers);
    await copy(registry, reference, 'containers-storage:x:t');
    const [image] = await readJson<ImageRecord[]>(imagesJson());
    const layersBefore = await readFile(graphLayersJson(), 'utf8');
    const volatileLayers = join(store.runRoot, 'vfs-layers', 'volatile-layers.json');
    await addVolatileLayer(volatileLayers, image!.layer!, { incomplete: true });

    // The same image again: every layer is in the store, so only the incomplete one is cleaned up.
    await copy(registry, reference, 'containers-storage:x:t');
    expect(await readJson<LayerRecord[]>(volatileLayers)).toEqual([]);
    expect(existsSync(join(store.graphRoot, 'vfs', 'dir', containerLayerId))).toBe(false);
    expect(await readFile(graphLayersJson(), 'utf8')).toBe(layersBefore);
    expect(await store.podman(['images', '--no-trunc', '--format', '{{.ID}}'])).toContain(image!.id);
  });

  it('in a persistent store, reads volatile-layers.json and containers beside layers.json and containers.json', async () => {
    const registry = await useAsDefaultStore(false);
    const { reference } = await fixtureLayout(store.directory, 'layout', twoLayers);
    await copy(registry, reference, 'containers-storage:x:t');
    const [image] = await readJson<ImageRecord[]>(imagesJson());
    const layers = await readJson<LayerRecord[]>(graphLayersJson());
    // A `--rm` container: volatile layer beside layers.json, record in volatile-containers.json.
    const volatileLayers = join(store.graphRoot, 'vfs-layers', 'volatile-layers.json');
    const volatileText = await addVolatileLayer(volatileLayers, image!.layer!);
    await addContainer(join(store.graphRoot, 'vfs-containers'), 'volatile-containers.json', image!.id);
    await expect(registry.parseImageReference('containers-storage:x:t').deleteImage()).rejects.toThrow(
      `in use by container ${containerId}`,
    );

    await writeFile(join(store.graphRoot, 'vfs-containers', 'volatile-containers.json'), '[]');
    await registry.parseImageReference('containers-storage:x:t').deleteImage();
    expect(await readJson<ImageRecord[]>(imagesJson())).toEqual([]);
    expect(await readJson<LayerRecord[]>(graphLayersJson())).toEqual(layers);
    expect(await readFile(volatileLayers, 'utf8')).toBe(volatileText);
    expect(existsSync(join(store.runRoot, 'vfs-layers', 'volatile-layers.json'))).toBe(false);
  });

  it('in a transient store whose run root was emptied (a reboot), still reads containers.json of the graph root', async () => {
    const registry = await useAsDefaultStore(true);
    const { reference } = await fixtureLayout(store.directory, 'layout', twoLayers);
    await copy(registry, reference, 'containers-storage:x:t');
    const [image] = await readJson<ImageRecord[]>(imagesJson());
    await rm(join(store.runRoot, 'vfs-containers'), { recursive: true, force: true });
    await addContainer(join(store.graphRoot, 'vfs-containers'), 'containers.json', image!.id);
    await expect(registry.parseImageReference('containers-storage:x:t').deleteImage()).rejects.toThrow(
      `in use by container ${containerId}`,
    );
    expect(await readJson<ImageRecord[]>(imagesJson())).toHaveLength(1);
  });

  it('opens a store named in the reference as persistent, as containers/image does, whatever storage.conf says', async () => {
    const registry = await useAsDefaultStore(true);
    const named = registry.parseImageReference(`containers-storage:${store.specification}x:t`);
    const byDefault = registry.parseImageReference('containers-storage:x:t');
    expect((named as unknown as { location: { transientStore?: boolean } }).location.transientStore).toBe(
      false,
    );
    expect((byDefault as unknown as { location: { transientStore?: boolean } }).location.transientStore).toBe(
      true,
    );
  });
});
