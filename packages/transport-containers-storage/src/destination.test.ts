/**
 * The destination's in-order application of layers as their blobs arrive (`PutBlobOptions.layerIndex`
 * and `layerDiffIds`), driven through the destination API in orders the copy pipeline may produce, and
 * checked on disk and with podman.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import type { Digest } from '@gantry/core';
import { type FixtureImage, type FixtureImageSpec, fixturePresets } from '@gantry/core/testing';
import type { ImageDestination } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { layerIdFor } from './ids.js';
import type { LayerRecord } from './store.js';
import { createTestStore, fixtureLayout, type TestStore } from './test-support/stores.js';
import { createContainersStorageTransport } from './transport.js';

const transport = createContainersStorageTransport();

const twoLayers: FixtureImageSpec = {
  ...(fixturePresets.dockerSchema2 as FixtureImageSpec),
  format: 'oci',
};

let store: TestStore;
let image: FixtureImage;

beforeEach(async () => {
  store = await createTestStore('vfs');
  ({ image } = await fixtureLayout(store.directory, 'layout', twoLayers));
});
afterEach(async () => {
  await store.dispose();
});

async function layerRecords(): Promise<LayerRecord[]> {
  try {
    return JSON.parse(await readFile(join(store.graphRoot, 'vfs-layers', 'layers.json'), 'utf8'));
  } catch {
    return [];
  }
}

/** A destination whose temporary directory is unusable (a regular file): any spooling fails. */
async function openDestination(options: { spoolable: boolean }): Promise<ImageDestination> {
  const notADirectory = join(store.directory, 'not-a-directory');
  await writeFile(notADirectory, '');
  const reference = transport.parseReference(`${store.specification}x:t`);
  return reference.newImageDestination(options.spoolable ? {} : { temporaryDirectory: notADirectory });
}

const single = () => image.images[0]!;

async function putLayer(
  destination: ImageDestination,
  index: number,
  diffIds: readonly Digest[] = single().diffIds,
): Promise<void> {
  const digest = single().layerDigests[index]!;
  const blob = image.blobs.get(digest)!;
  await destination.putBlob(
    blob.open(),
    { digest, size: blob.size },
    { isConfig: false, layerIndex: index, layerDiffIds: diffIds },
  );
}

async function finish(destination: ImageDestination): Promise<void> {
  const { configDigest, manifestDigest } = single();
  const config = image.blobs.get(configDigest)!;
  await destination.putBlob(config.open(), { digest: configDigest, size: config.size }, { isConfig: true });
  const manifest = image.manifests.get(manifestDigest)!;
  await destination.putManifest(manifest.bytes, manifest.mediaType);
  await destination.commit();
}

const expectedLayerIds = () => {
  const [base, top] = single().diffIds;
  const baseId = layerIdFor(undefined, base!);
  return [baseId, layerIdFor(baseId, top!)];
};

describe('containers-storage destination: layers applied as their blobs arrive', () => {
  it('applies each layer in order while its blob arrives, with no temporary file', async () => {
    const destination = await openDestination({ spoolable: false });
    try {
      await putLayer(destination, 0);
      // In the store, complete, before the next blob or the commit.
      expect((await layerRecords()).map((layer) => [layer.id, layer.flags])).toEqual([
        [expectedLayerIds()[0], undefined],
      ]);
      await putLayer(destination, 1);
      expect((await layerRecords()).map((layer) => layer.id)).toEqual(expectedLayerIds());
      await finish(destination);
    } finally {
      await destination.close();
    }
    const inspected = JSON.parse(await store.podman(['image', 'inspect', 'x:t']));
    expect(inspected[0].Id).toBe(single().configDigest.slice(7));
    expect(inspected[0].RootFS.Layers).toEqual(single().diffIds);
    const records = await layerRecords();
    expect(records[1]!['compressed-diff-digest']).toBe(single().layerDigests[1]);
    expect(records[1]!['diff-digest']).toBe(single().diffIds[1]);
  }, 120_000);

  it('spools a layer that arrives before its parent and applies it once the parent is in the store', async () => {
    const destination = await openDestination({ spoolable: true });
    try {
      await putLayer(destination, 1);
      expect(await layerRecords()).toEqual([]);
      await putLayer(destination, 0);
      await finish(destination);
    } finally {
      await destination.close();
    }
    expect((await layerRecords()).map((layer) => layer.id)).toEqual(expectedLayerIds());
    const inspected = JSON.parse(await store.podman(['image', 'inspect', 'x:t']));
    expect(inspected[0].RootFS.Layers).toEqual(single().diffIds);
    const mountPoint = (await store.podman(['image', 'mount', 'x:t'])).trim();
    try {
      expect(await readFile(join(mountPoint, 'etc/motd'), 'utf8')).toBe('docker schema2 fixture\n');
    } finally {
      await store.podman(['image', 'unmount', 'x:t']);
    }
  }, 120_000);

  it('refuses a layer whose contents do not have the DiffID the config gives, leaving no layer', async () => {
    const destination = await openDestination({ spoolable: false });
    const [base, top] = single().diffIds;
    try {
      await expect(putLayer(destination, 0, [top!, base!])).rejects.toMatchObject({
        code: 'ERR_GANTRY_DIGEST_MISMATCH',
        message: expect.stringContaining(`the config's DiffID is ${top}`),
      });
      expect(await layerRecords()).toEqual([]);
    } finally {
      await destination.close();
    }
    expect(await store.podman(['images', '-q'])).toBe('');
  }, 120_000);

  it('removes a layer whose blob fails mid-way, and applies it when the blob is given again (a retry)', async () => {
    const destination = await openDestination({ spoolable: false });
    const digest = single().layerDigests[0]!;
    const blob = image.blobs.get(digest)!;
    const bytes = Buffer.concat(await blob.open().toArray());
    // Half the blob, then the connection breaks: the error comes while the destination reads (a
    // stream destroyed before anybody reads it would be an uncaught error, whatever the destination).
    const broken = Readable.from(
      (async function* () {
        yield bytes.subarray(0, Math.floor(bytes.length / 2));
        await delay(50);
        throw new Error('connection reset');
      })(),
      { objectMode: false },
    );
    try {
      await expect(
        destination.putBlob(
          broken,
          { digest, size: blob.size },
          { isConfig: false, layerIndex: 0, layerDiffIds: single().diffIds },
        ),
      ).rejects.toThrow(/connection reset/);
      expect(await layerRecords()).toEqual([]);
      await putLayer(destination, 0);
      await putLayer(destination, 1);
      await finish(destination);
    } finally {
      await destination.close();
    }
    expect((await layerRecords()).map((layer) => layer.id)).toEqual(expectedLayerIds());
    const inspected = JSON.parse(await store.podman(['image', 'inspect', 'x:t']));
    expect(inspected[0].RootFS.Layers).toEqual(single().diffIds);
  }, 120_000);

  it('removes the layers it applied when closed without a commit', async () => {
    const destination = await openDestination({ spoolable: true });
    await putLayer(destination, 0);
    await putLayer(destination, 1);
    expect(await layerRecords()).toHaveLength(2);
    await destination.close();
    expect(await layerRecords()).toEqual([]);
    expect(JSON.parse(await store.podman(['images', '-a', '--format', 'json']))).toEqual([]);
  }, 120_000);
});
