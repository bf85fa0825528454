/**
 * oci-archive: under @gantry/core's copy pipeline, and against the real skopeo and tar:
 * - every preset copied from an archive made by GNU tar of a hand-written layout into a Gantry-written
 *   archive, which `tar -tf` lists (index.json last), skopeo inspects and copies out keeping the digest;
 * - archives skopeo wrote are read by Gantry byte for byte (same manifest digests, every blob verified).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import {
  buildFixtureImage,
  type FixturePresetName,
  fixturePresets,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { digestOf, MediaTypes } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ociArchiveTransport } from './index.js';
import { runTool, skopeo, temporaryDirectory } from './test-support/tools.js';

let directory = '';
let remove: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ directory, remove } = await temporaryDirectory());
});
afterEach(() => remove());

const presetNames = Object.keys(fixturePresets) as FixturePresetName[];

/** Builds `preset` into an OCI layout and tars it with GNU tar (`./`-prefixed names, directory entries). */
async function tarredLayout(preset: FixturePresetName, name: string): Promise<string> {
  const image = await buildFixtureImage(fixturePresets[preset], {
    directory: path.join(directory, 'fixture'),
  });
  const layout = path.join(directory, 'layout');
  await writeFixtureToOciLayout(image, layout, name);
  const archive = path.join(directory, 'source.tar');
  await runTool('tar', ['-cf', archive, '-C', layout, '.']);
  return archive;
}

function indexDigest(indexJson: string, name: string): string {
  const index = JSON.parse(indexJson) as {
    manifests: Array<{ digest: string; annotations?: Record<string, string> }>;
  };
  const entry = index.manifests.find(
    (item) => item.annotations?.['org.opencontainers.image.ref.name'] === name,
  );
  if (!entry) throw new Error(`no index entry named ${name}`);
  return entry.digest;
}

describe('copyImage into oci-archive:, read by skopeo and tar', () => {
  for (const preset of presetNames) {
    it(`copies preset ${preset} (converted to OCI, compressed layers)`, async () => {
      const source = await tarredLayout(preset, preset);
      const destination = path.join(directory, 'destination.tar');
      const result = await copyImage(
        ociArchiveTransport.parseReference(`${source}:${preset}`),
        ociArchiveTransport.parseReference(`${destination}:${preset}`),
        { policy: insecureAcceptAnythingPolicy(), imageListSelection: 'all' },
      );
      expect([MediaTypes.OciManifest, MediaTypes.OciIndex]).toContain(result.manifestMediaType);

      const listing = (await runTool('tar', ['-tf', destination])).trim().split('\n');
      expect(listing.at(-1)).toBe('index.json');
      expect(listing.at(-2)).toBe('oci-layout');
      expect(listing.slice(0, 2)).toEqual(['blobs/', 'blobs/sha256/']);
      expect(new Set(listing).size).toBe(listing.length);

      const raw = await skopeo(['inspect', '--raw', `oci-archive:${destination}:${preset}`]);
      expect(raw).toBe(Buffer.from(result.manifest).toString());
      if (result.manifestMediaType === MediaTypes.OciManifest) {
        const inspected = JSON.parse(await skopeo(['inspect', `oci-archive:${destination}:${preset}`])) as {
          Digest: string;
        };
        expect(inspected.Digest).toBe(result.manifestDigest);
        const manifest = JSON.parse(raw) as { layers: Array<{ mediaType: string }> };
        for (const layer of manifest.layers) expect(layer.mediaType).toBe(MediaTypes.OciLayerGzip);
      }
      const out = path.join(directory, 'out');
      await skopeo([
        'copy',
        '--insecure-policy',
        '--all',
        `oci-archive:${destination}:${preset}`,
        `oci:${out}:x`,
      ]);
      expect(indexDigest(await readFile(path.join(out, 'index.json'), 'utf8'), 'x')).toBe(
        result.manifestDigest,
      );
    });
  }

  it('keeps uncompressed layers with transportOptions["oci-archive"].acceptUncompressedLayers', async () => {
    const source = await tarredLayout('uncompressedLayers', 't');
    const image = await buildFixtureImage(fixturePresets.uncompressedLayers, {
      directory: path.join(directory, 'f'),
    });
    const result = await copyImage(
      ociArchiveTransport.parseReference(`${source}:t`),
      ociArchiveTransport.parseReference(`${directory}/destination.tar:t`),
      {
        policy: insecureAcceptAnythingPolicy(),
        destinationContext: { transportOptions: { 'oci-archive': { acceptUncompressedLayers: true } } },
      },
    );
    expect(result.manifestDigest).toBe(image.topLevel.digest);
  });
});

/** skopeo 1.9's `oci:` source selects only OCI-typed index entries, so it cannot read Docker presets from a layout. */
const ociPresetNames = presetNames.filter((name) => fixturePresets[name].format !== 'docker');

describe('archives written by skopeo, read by Gantry', () => {
  for (const preset of ociPresetNames) {
    it(`reads skopeo's archive of preset ${preset} with the same manifest digests`, async () => {
      const image = await buildFixtureImage(fixturePresets[preset], {
        directory: path.join(directory, 'fixture'),
      });
      const layout = path.join(directory, 'layout');
      await writeFixtureToOciLayout(image, layout, 't');
      const skopeoArchive = path.join(directory, 'skopeo.tar');
      await skopeo([
        'copy',
        '--insecure-policy',
        '--all',
        `oci:${layout}:t`,
        `oci-archive:${skopeoArchive}:t`,
      ]);
      const skopeoManifest = await skopeo(['inspect', '--raw', `oci-archive:${skopeoArchive}:t`]);

      const source = await ociArchiveTransport.parseReference(`${skopeoArchive}:t`).newImageSource();
      try {
        const top = await source.getManifest();
        expect(Buffer.from(top.bytes).toString()).toBe(skopeoManifest);
      } finally {
        await source.close();
      }
      // Every blob and manifest read and verified by the pipeline, the digests kept.
      const result = await copyImage(
        ociArchiveTransport.parseReference(`${skopeoArchive}:t`),
        ociArchiveTransport.parseReference(`${directory}/gantry.tar:t`),
        { policy: insecureAcceptAnythingPolicy(), imageListSelection: 'all', preserveDigests: true },
      );
      expect(result.manifestDigest).toBe(digestOf(skopeoManifest));
    });
  }
});
