/**
 * The oci: transport under @gantry/core's copy pipeline: every preset copied from a layout written by
 * hand into a Gantry-written layout, which skopeo then reads (verifying every digest as it copies out).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { copyImage, insecureAcceptAnythingPolicy, MediaTypes } from '@gantry/core';
import {
  buildFixtureImage,
  type FixturePresetName,
  fixturePresets,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ociTransport } from './index.js';
import { temporaryDirectory } from './test-support/images.js';

const execFileAsync = promisify(execFile);

async function skopeo(args: string[]): Promise<string> {
  try {
    return (await execFileAsync('skopeo', args, { maxBuffer: 64 * 1024 * 1024 })).stdout;
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT') throw new Error('skopeo is required by this test but is not installed');
    throw new Error(`skopeo ${args.join(' ')} failed: ${failure.stderr ?? failure.message}`);
  }
}

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

  it('keeps uncompressed layers with ociAcceptUncompressedLayers', async () => {
    const image = await buildFixtureImage(fixturePresets.uncompressedLayers, {
      directory: path.join(directory, 'f'),
    });
    await writeFixtureToOciLayout(image, path.join(directory, 'source'), 't');
    const result = await copyImage(
      ociTransport.parseReference(`${directory}/source:t`),
      ociTransport.parseReference(`${directory}/destination:t`),
      { policy: insecureAcceptAnythingPolicy(), destinationContext: { ociAcceptUncompressedLayers: true } },
    );
    expect(result.manifestDigest).toBe(image.topLevel.digest);
  });
});
