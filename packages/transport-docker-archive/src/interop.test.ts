/**
 * Interoperability with the real tools: skopeo reads the archives Gantry writes and Gantry reads skopeo's;
 * podman loads Gantry's archives. These tests fail (never skip) when a tool is missing.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { type Digest, digestHex, digestOf } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dockerArchiveTransport } from './index.js';
import {
  type Collected,
  collectingReference,
  fixtureReference,
  run,
  temporaryDirectory,
} from './test-support/helpers.js';

let directory = '';
let remove: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ directory, remove } = await temporaryDirectory());
});
afterEach(() => remove());

const policy = insecureAcceptAnythingPolicy();

async function fixture(name: keyof typeof fixturePresets): Promise<FixtureImage> {
  return buildFixtureImage(fixturePresets[name], { directory: path.join(directory, `fixture-${name}`) });
}

/** Config digest and DiffIDs of the image in an OCI layout (as skopeo wrote it). */
async function ociLayoutImage(layout: string): Promise<{ configDigest: Digest; diffIds: Digest[] }> {
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
  const blob = (digest: Digest) => readFile(path.join(layout, 'blobs', 'sha256', digestHex(digest)), 'utf8');
  const manifest = JSON.parse(await blob(index.manifests[0].digest));
  const config = JSON.parse(await blob(manifest.config.digest));
  return { configDigest: manifest.config.digest, diffIds: config.rootfs.diff_ids };
}

// skopeo's oci: reader only takes OCI manifests from index.json, so skopeo sources use the OCI presets.
const ociPresets = [
  'ociMinimal',
  'uncompressedLayers',
  'everyEntryType',
  'longAndNonAsciiNames',
  'whiteoutLayers',
] as const;

describe('Gantry reads archives skopeo writes', () => {
  for (const preset of ociPresets) {
    it(`preset ${preset}: same config digest and DiffIDs as skopeo's own copy to oci:`, async () => {
      const image = await fixture(preset);
      await writeFixtureToOciLayout(image, path.join(directory, 'layout'), 't');
      const archive = path.join(directory, 'skopeo.tar');
      await run('skopeo', [
        'copy',
        '--insecure-policy',
        `oci:${directory}/layout:t`,
        `docker-archive:${archive}:example.com/x:y`,
      ]);
      await run('skopeo', [
        'copy',
        '--insecure-policy',
        `docker-archive:${archive}`,
        `oci:${directory}/skopeo-out:t`,
      ]);
      const skopeoCopy = await ociLayoutImage(path.join(directory, 'skopeo-out'));

      const collected: Collected = { blobs: new Map(), committed: false };
      await copyImage(
        dockerArchiveTransport.parseReference(`${archive}:example.com/x:y`),
        collectingReference(collected),
        {
          policy,
        },
      );
      const manifest = JSON.parse(Buffer.from(collected.manifest!.bytes).toString());
      const config = JSON.parse(collected.blobs.get(manifest.config.digest)!.toString());
      expect({ configDigest: manifest.config.digest, diffIds: config.rootfs.diff_ids }).toEqual(skopeoCopy);
      expect(skopeoCopy.configDigest).toBe(image.images[0]!.configDigest);

      // Our source's manifest is byte-identical to skopeo's, so `inspect` digests agree.
      const source = await dockerArchiveTransport.parseReference(archive).newImageSource();
      try {
        const raw = await run('skopeo', ['inspect', '--raw', `docker-archive:${archive}`]);
        expect(Buffer.from((await source.getManifest()).bytes).toString()).toBe(raw);
      } finally {
        await source.close();
      }
    });
  }
});

describe('skopeo and podman read archives Gantry writes', () => {
  const presets = [
    'ociMinimal',
    'dockerSchema2',
    'uncompressedLayers',
    'everyEntryType',
    'specialCharacterConfig',
  ] as const;
  for (const preset of presets) {
    it(`preset ${preset}: skopeo inspect and copy to oci: keep the config digest and DiffIDs`, async () => {
      const image = await fixture(preset);
      const archive = path.join(directory, 'gantry.tar');
      const result = await copyImage(
        fixtureReference(image),
        dockerArchiveTransport.parseReference(`${archive}:example.com/${preset.toLowerCase()}:v1`),
        { policy },
      );
      expect(result.manifestDigest).toBe(digestOf(result.manifest));
      const inspected = JSON.parse(await run('skopeo', ['inspect', `docker-archive:${archive}`]));
      const source = await dockerArchiveTransport.parseReference(archive).newImageSource();
      try {
        expect(inspected.Digest).toBe(digestOf((await source.getManifest()).bytes));
      } finally {
        await source.close();
      }
      expect(inspected.Layers).toEqual(image.images[0]!.diffIds);
      // dir: keeps the schema2 manifest and the config bytes.
      await run('skopeo', [
        'copy',
        '--insecure-policy',
        `docker-archive:${archive}`,
        `dir:${directory}/dir-out`,
      ]);
      const dirManifest = JSON.parse(
        await readFile(path.join(directory, 'dir-out', 'manifest.json'), 'utf8'),
      );
      expect(dirManifest.config.digest).toBe(image.images[0]!.configDigest);
      const dirConfig = JSON.parse(
        await readFile(path.join(directory, 'dir-out', digestHex(dirManifest.config.digest)), 'utf8'),
      );
      expect(dirConfig.rootfs.diff_ids).toEqual(image.images[0]!.diffIds);
      // oci: converts to an OCI manifest; skopeo re-encodes the config then, which changes its digest when
      // the config was not written in Go's JSON form (the specialCharacterConfig preset), but not the DiffIDs.
      await run('skopeo', [
        'copy',
        '--insecure-policy',
        `docker-archive:${archive}`,
        `oci:${directory}/out:t`,
      ]);
      const ociCopy = await ociLayoutImage(path.join(directory, 'out'));
      expect(ociCopy.diffIds).toEqual(image.images[0]!.diffIds);
      if (preset !== 'specialCharacterConfig')
        expect(ociCopy.configDigest).toBe(image.images[0]!.configDigest);
    });
  }

  it('podman load accepts the archive, with its tags and image ID', async () => {
    const image = await fixture('dockerSchema2');
    const archive = path.join(directory, 'podman.tar');
    await copyImage(
      fixtureReference(image),
      dockerArchiveTransport.parseReference(`${archive}:example.com/app:v1`),
      {
        policy,
        destinationContext: {
          transportOptions: { 'docker-archive': { additionalTags: ['example.com/app:extra'] } },
        },
      },
    );
    const podman = (args: string[]) =>
      run('podman', [
        '--storage-driver',
        'vfs',
        '--root',
        path.join(directory, 'root'),
        '--runroot',
        path.join(directory, 'runroot'),
        ...args,
      ]);
    await podman(['load', '-i', archive]);
    const images = JSON.parse(await podman(['images', '--format', 'json'])) as Array<{
      Id: string;
      Names: string[];
    }>;
    // One image, listed once per name.
    expect(new Set(images.map((entry) => entry.Id))).toEqual(
      new Set([digestHex(image.images[0]!.configDigest)]),
    );
    expect([...new Set(images.flatMap((entry) => entry.Names))].sort()).toEqual([
      'example.com/app:extra',
      'example.com/app:v1',
    ]);
    const inspected = JSON.parse(await podman(['image', 'inspect', 'example.com/app:v1']));
    expect(inspected[0].RootFS.Layers).toEqual(image.images[0]!.diffIds);
    await podman(['rmi', '--all', '--force']);
  });
});
