/**
 * Manifest format conversions (`-f oci|v2s2|v2s1`) through `dir:`, side by side with the real skopeo:
 * the chain v2s2 → OCI → v2s2 → v2s1 → v2s2 gives, at every step, the manifest type, manifest digest
 * (for signed schema1: the digest of the signed payload, as `skopeo manifest-digest` computes it),
 * config and layer digests skopeo gives. The schema1 signatures themselves differ (each tool signs
 * with a fresh key); Gantry's verify against the key they embed.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { copyImage, insecureAcceptAnythingPolicy } from '@gantry/core';
import {
  buildFixtureImage,
  type FixtureImage,
  gzippedEmptyLayerDigest,
  runSkopeo,
  schema1SignaturesVerify,
  schema1SignedPayload,
  writeFixtureToDestination,
} from '@gantry/core/testing';
import {
  type Digest,
  ErrorCodes,
  guessManifestMediaType,
  MediaTypes,
  manifestDigest,
} from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDirTransport } from './index.js';

const transport = createDirTransport({ durable: false });
const policy = insecureAcceptAnythingPolicy();

let top: string;
let image: FixtureImage;

beforeAll(async () => {
  top = await mkdtemp(path.join(os.tmpdir(), 'gantry-conversion-'));
  image = await buildFixtureImage(
    {
      format: 'docker',
      layers: [
        { entries: [{ type: 'file', path: 'etc/base', content: 'base layer\n' }], compression: 'gzip' },
        {
          entries: [{ type: 'file', path: 'app/bin', randomSize: 20_000, seed: 'conv' }],
          compression: 'gzip',
        },
      ],
      // ENV-like instructions: empty layers in schema1, history entries elsewhere.
      emptyLayerHistory: [
        { afterLayer: 0, createdBy: '/bin/sh -c #(nop) ENV A=1' },
        { afterLayer: 1, createdBy: '/bin/sh -c #(nop)  CMD ["/app/bin"]' },
      ],
      config: { Cmd: ['/app/bin'], Env: ['PATH=/usr/bin', 'A=1'] },
    },
    { directory: path.join(top, 'fixture') },
  );
  const destination = await transport.parseReference(path.join(top, 'start')).newImageDestination();
  await writeFixtureToDestination(image, destination);
  await destination.close();
});

afterAll(async () => {
  if (top) await rm(top, { recursive: true, force: true });
});

const formats = {
  oci: MediaTypes.OciManifest,
  v2s2: MediaTypes.DockerManifest,
  v2s1: MediaTypes.DockerSchema1Signed,
};

/** What a dir: image holds: its manifest type and digest, and the digests of its other files. */
async function describeDir(directory: string) {
  const bytes = await readFile(path.join(directory, 'manifest.json'));
  const mediaType = guessManifestMediaType(bytes);
  const files = (await readdir(directory))
    .filter((name) => name !== 'manifest.json' && name !== 'version')
    .sort();
  return { mediaType, digest: manifestDigest(bytes), files, bytes };
}

describe('format conversion chain through dir:, compared with skopeo', () => {
  it('v2s2 → OCI → v2s2 → v2s1 → v2s2 gives skopeo’s manifest types and digests', async () => {
    await runSkopeo(['--version']);
    const chain = ['oci', 'v2s2', 'v2s1', 'v2s2'] as const;
    let oursPrevious = path.join(top, 'start');
    let theirsPrevious = path.join(top, 'start');
    for (const [step, format] of chain.entries()) {
      const ours = path.join(top, `gantry-${step}-${format}`);
      const theirs = path.join(top, `skopeo-${step}-${format}`);
      const result = await copyImage(transport.parseReference(oursPrevious), transport.parseReference(ours), {
        policy,
        manifestMediaType: formats[format],
      });
      await runSkopeo(['copy', '--insecure-policy', '-f', format, `dir:${theirsPrevious}`, `dir:${theirs}`]);
      const gantry = await describeDir(ours);
      const skopeo = await describeDir(theirs);
      const where = `step ${step + 1} (-f ${format})`;
      expect(gantry.mediaType, where).toBe(formats[format]);
      expect(gantry.mediaType, where).toBe(skopeo.mediaType);
      expect(gantry.digest, where).toBe(skopeo.digest);
      expect(result.manifestDigest, where).toBe(gantry.digest);
      expect(gantry.files, where).toEqual(skopeo.files);
      const skopeoDigest = (await runSkopeo(['manifest-digest', path.join(ours, 'manifest.json')]))
        .toString()
        .trim();
      expect(skopeoDigest, where).toBe(gantry.digest);
      if (format === 'v2s1') {
        // The payloads are byte for byte skopeo's; the signatures are each tool's own, and ours verify.
        expect(
          Buffer.from(schema1SignedPayload(gantry.bytes)).equals(
            Buffer.from(schema1SignedPayload(skopeo.bytes)),
          ),
        ).toBe(true);
        expect(schema1SignaturesVerify(gantry.bytes, schema1SignedPayload(gantry.bytes))).toBe(true);
        expect(gantry.files).toContain(gzippedEmptyLayerDigest.slice('sha256:'.length));
        // skopeo reads Gantry's schema1 manifest.
        const inspected = JSON.parse((await runSkopeo(['inspect', `dir:${ours}`])).toString()) as {
          Layers: Digest[];
        };
        expect(inspected.Layers).toHaveLength(4);
      }
      oursPrevious = ours;
      theirsPrevious = theirs;
    }
    // Back in v2s2, the image is the one we started from up to the config skopeo rebuilt.
    const final = await describeDir(oursPrevious);
    expect(final.mediaType).toBe(MediaTypes.DockerManifest);
  }, 120_000);

  it('--preserve-digests refuses every conversion', async () => {
    for (const format of ['oci', 'v2s1'] as const) {
      await expect(
        copyImage(
          transport.parseReference(path.join(top, 'start')),
          transport.parseReference(path.join(top, `refused-${format}`)),
          { policy, manifestMediaType: formats[format], preserveDigests: true },
        ),
      ).rejects.toMatchObject({ code: ErrorCodes.DigestsNotPreservable });
    }
  });
});
