import path from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import {
  buildFixtureImage,
  type FixturePresetName,
  fixturePresets,
  runSkopeo,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { MediaTypes } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ociTransport } from './index.js';
import { temporaryDirectory } from './test-support/images.js';

const skopeo = async (args: string[]): Promise<string> => (await runSkopeo(args)).toString('utf8');

let directory = '';
let remove: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ directory, remove } = await temporaryDirectory());
});
afterEach(() => remove());

describe('copyImage into and out of oci: layouts', () => {
  for (const name of Object.keys(fixturePresets) as FixturePresetName[]) {
    it(`copies preset ${name}, converted to OCI and with compressed layers`, async () => {
      const image = await buildFixtureImage(fixturePresets[name], {
        directory: path.join(directory, 'fixture'),
      });
      await writeFixtureToOciLayout(image, path.join(directory, 'source'), name);
      const destination = path.join(directory, 'destination');
      const result = await copyImage(
        ociTransport.parseReference(`${directory}/source:${name}`),
        ociTransport.parseReference(`${destination}:${name}`),
        { policy: insecureAcceptAnythingPolicy(), imageListSelection: 'all' },
      );
      expect([MediaTypes.OciManifest, MediaTypes.OciIndex]).toContain(result.manifestMediaType);

      const raw = await skopeo(['inspect', '--raw', `oci:${destination}:${name}`]);
      expect(raw).toBe(Buffer.from(result.manifest).toString());
      const out = path.join(directory, 'out');
      await skopeo([
        'copy',
        '--insecure-policy',
        '--all',
        '--preserve-digests',
        `oci:${destination}:${name}`,
        `oci:${out}:x`,
      ]);

      if (result.manifestMediaType === MediaTypes.OciManifest) {
        const manifest = JSON.parse(raw) as { layers: Array<{ mediaType: string }> };
        for (const layer of manifest.layers) expect(layer.mediaType).toBe(MediaTypes.OciLayerGzip);
      }
    });
  }

  it('keeps uncompressed layers with transportOptions.oci.acceptUncompressedLayers', async () => {
    const image = await buildFixtureImage(fixturePresets.uncompressedLayers, {
      directory: path.join(directory, 'f'),
    });
    await writeFixtureToOciLayout(image, path.join(directory, 'source'), 't');
    const result = await copyImage(
      ociTransport.parseReference(`${directory}/source:t`),
      ociTransport.parseReference(`${directory}/destination:t`),
      {
        policy: insecureAcceptAnythingPolicy(),
        destinationContext: { transportOptions: { oci: { acceptUncompressedLayers: true } } },
      },
    );
    expect(result.manifestDigest).toBe(image.topLevel.digest);
  });
});
