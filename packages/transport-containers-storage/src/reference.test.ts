import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type FixtureImageSpec, fixturePresets } from '@gantry/core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bigDataFileName, layerIdFor } from './ids.js';
import { validatePolicyConfigurationScope } from './reference.js';
import type { ImageRecord, LayerRecord } from './store.js';
import { createTestStore, fixtureLayout, skopeoCopy, type TestStore } from './test-support/stores.js';
import { containersStorageTransport as transport } from './transport.js';

const root = '/tmp/gantry-nonexistent-store/root';
const run = '/tmp/gantry-nonexistent-store/run';
const spec = `[vfs@${root}+${run}]`;

describe('containers-storage references', () => {
  it('normalises names and adds :latest', () => {
    const reference = transport.parseReference(`${spec}busybox`);
    expect(reference.stringWithinTransport()).toBe(`${spec}docker.io/library/busybox:latest`);
    expect(reference.dockerReference()?.toString()).toBe('docker.io/library/busybox:latest');
    expect(reference.id).toBeUndefined();
  });

  it('keeps the driver options and run root in the string, not in the policy identity', () => {
    const reference = transport.parseReference(
      `[overlay@${root}+${run}:overlay.mountopt=nodev,overlay.x=y]quay.io/a/b:1`,
    );
    expect(reference.stringWithinTransport()).toBe(
      `[overlay@${root}+${run}:overlay.mountopt=nodev,overlay.x=y]quay.io/a/b:1`,
    );
    expect(reference.policyConfigurationIdentity()).toBe(`[overlay@${root}]quay.io/a/b:1`);
    expect(reference.policyConfigurationNamespaces()).toEqual([
      `[overlay@${root}]quay.io/a/b`,
      `[overlay@${root}]quay.io/a`,
      `[overlay@${root}]quay.io`,
      `[overlay@${root}]`,
      `[${root}]`,
    ]);
  });

  it('peels a trailing image ID off name:tag@digest@id, and gives the name:tag namespace', () => {
    const id = 'a'.repeat(64);
    const digest = `sha256:${'b'.repeat(64)}`;
    const reference = transport.parseReference(`${spec}x:t@${digest}@${id}`);
    expect(reference.id).toBe(id);
    expect(reference.dockerReference()?.toString()).toBe(`docker.io/library/x:t@${digest}`);
    expect(reference.stringWithinTransport()).toBe(`${spec}docker.io/library/x:t@${digest}@${id}`);
    expect(reference.policyConfigurationNamespaces().slice(0, 3)).toEqual([
      `[vfs@${root}]docker.io/library/x:t@${digest}`,
      `[vfs@${root}]docker.io/library/x:t`,
      `[vfs@${root}]docker.io/library/x`,
    ]);
    expect(transport.parseReference(`${spec}@${id}`).stringWithinTransport()).toBe(`${spec}@${id}`);
    // Without "@", 64 hex characters are an ID only when such an image exists; they are never a name.
    expect(() => transport.parseReference(`${spec}${id}`)).toThrow(
      /cannot specify 64-byte hexadecimal strings/,
    );
  });

  it('round-trips through stringWithinTransport', () => {
    for (const input of [`${spec}x:t`, `${spec}localhost/x:t`, `${spec}@${'c'.repeat(64)}`]) {
      const reference = transport.parseReference(input);
      expect(transport.parseReference(reference.stringWithinTransport()).stringWithinTransport()).toBe(
        reference.stringWithinTransport(),
      );
    }
  });

  it.each([
    ['', /empty reference/],
    ['[]x:t', /invalid reference/],
    ['[vfs@]x:t', /invalid reference/],
    ['[relative/root]x:t', /not absolute/],
    ['[vfs@/abs+relative]x:t', /not absolute/],
    [`[${root}`, /did not end/],
    [`${spec}x:t@`, /empty trailing digest or ID/],
    [`${spec}x:t@zz`, /does not look like an image ID or digest/],
    [`${spec}UPPER:t`, /parsing named reference/],
  ])('rejects %j', (input, message) => {
    expect(() => transport.parseReference(input)).toThrowError(
      expect.objectContaining({
        code: 'ERR_GANTRY_INVALID_REFERENCE',
        message: expect.stringMatching(message),
      }),
    );
  });

  it('validates policy scopes as containers/image does', () => {
    validatePolicyConfigurationScope(`[vfs@${root}]`);
    validatePolicyConfigurationScope(`[${root}]docker.io/library/x:t`);
    validatePolicyConfigurationScope(`[vfs@${root}]x@${'a'.repeat(64)}`);
    expect(() => validatePolicyConfigurationScope('docker.io/x')).toThrow(/\[store\]/);
    expect(() => validatePolicyConfigurationScope('[vfs@relative]')).toThrow(/not absolute/);
    expect(() => validatePolicyConfigurationScope(`[vfs@${root}]x@nothex`)).toThrow(
      /neither a valid digest nor a valid ID/,
    );
  });
});

describe('against a store skopeo wrote', () => {
  let store: TestStore;
  let imageId: string;
  let layers: LayerRecord[];
  let images: ImageRecord[];
  let diffIds: string[];

  beforeAll(async () => {
    store = await createTestStore('vfs');
    const { image, reference } = await fixtureLayout(store.directory, 'layout', {
      ...(fixturePresets.dockerSchema2 as FixtureImageSpec),
      format: 'oci',
    });
    diffIds = image.images[0]!.diffIds;
    imageId = image.images[0]!.configDigest.slice('sha256:'.length);
    await skopeoCopy(reference, `containers-storage:${store.specification}localhost/x:t`);
    layers = JSON.parse(await readFile(join(store.graphRoot, 'vfs-layers', 'layers.json'), 'utf8'));
    images = JSON.parse(await readFile(join(store.graphRoot, 'vfs-images', 'images.json'), 'utf8'));
  }, 120_000);
  afterAll(() => store.dispose());

  it('computes the layer IDs skopeo gave the layers', () => {
    const base = layerIdFor(undefined, diffIds[0]!);
    const top = layerIdFor(base, diffIds[1]!);
    expect(layers.map((layer) => layer.id).sort()).toEqual([base, top].sort());
    expect(layers.find((layer) => layer.id === top)?.parent).toBe(base);
    expect(images[0]!.layer).toBe(top);
    expect(images[0]!.id).toBe(imageId);
  });

  it('names big-data files as containers/storage does', async () => {
    for (const key of images[0]!['big-data-names']!) {
      await readFile(join(store.graphRoot, 'vfs-images', imageId, bigDataFileName(key)));
    }
    expect(bigDataFileName('manifest')).toBe('manifest');
    expect(bigDataFileName('sha256:ab')).toBe(`=${Buffer.from('sha256:ab').toString('base64')}`);
  });

  it('expands an image ID prefix (≥ 3 characters) of an image in the store', () => {
    expect(transport.parseReference(`${store.specification}${imageId.slice(0, 12)}`).id).toBe(imageId);
    expect(transport.parseReference(`${store.specification}@${imageId.slice(0, 5)}`).id).toBe(imageId);
    expect(transport.parseReference(`${store.specification}localhost/x:t@${imageId.slice(0, 8)}`).id).toBe(
      imageId,
    );
    expect(() => transport.parseReference(`${store.specification}@${imageId.slice(0, 2)}`)).toThrow(
      /does not look like an image ID/,
    );
  });

  it('uses the driver of the existing store when the reference names only the graph root', () => {
    const reference = transport.parseReference(`[${store.graphRoot}+${store.runRoot}]localhost/x:t`);
    expect(reference.location.driverName).toBe('vfs');
  });
});
