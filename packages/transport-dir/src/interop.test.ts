import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  listPresetNames,
  runSkopeo,
  singleImagePresetNames,
  writeFixtureToDestination,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { type Digest, digestHex, digestOf, ErrorCodes } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDirTransport } from './index.js';
import { handBuiltImage, writeHandBuiltImage } from './test-support/hand-built-image.js';

const transport = createDirTransport({ durable: false });
const encoder = new TextEncoder();

/**
 * Signature bytes skopeo accepts: containers/image recognises a simple-signing signature by its first
 * byte (an OpenPGP packet tag, here 0xA3 "compressed data"); it does not verify with --insecure-policy.
 */
function fakeSignature(text: string): Uint8Array {
  return Uint8Array.of(0xa3, ...encoder.encode(text));
}

const skopeo = async (...args: string[]): Promise<string> => (await runSkopeo(args)).toString('utf8');

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** The digest of the manifest the single entry of an OCI layout's index.json names. */
async function ociLayoutTopDigest(layout: string): Promise<Digest> {
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8')) as {
    manifests: Array<{ digest: Digest }>;
  };
  expect(index.manifests).toHaveLength(1);
  return index.manifests[0]!.digest;
}

let top: string;
const fixtures = new Map<string, FixtureImage>();
const presetNames = [...singleImagePresetNames, ...listPresetNames].filter(
  (name) => name !== 'manySmallFiles', // covered elsewhere; its only interest here would be size
);

beforeAll(async () => {
  await skopeo('--version');
  top = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  for (const name of presetNames) {
    const spec = fixturePresets[name as keyof typeof fixturePresets];
    fixtures.set(name, await buildFixtureImage(spec, { directory: path.join(top, 'fixtures', name) }));
  }
});
afterAll(async () => {
  if (top) await rm(top, { recursive: true, force: true });
});

describe('images written by the dir: destination, read by skopeo', () => {
  it('a hand-built image with signatures: inspect, raw manifest, copy to oci keeps the digest, signatures copied', async () => {
    const image = handBuiltImage('interop');
    const directory = path.join(top, 'ours-hand');
    const signatures = [fakeSignature('signature one'), fakeSignature('signature two')];
    await writeHandBuiltImage(await transport.parseReference(directory).newImageDestination(), image, {
      signatures,
    });

    const inspect = JSON.parse(await skopeo('inspect', `dir:${directory}`)) as Record<string, unknown>;
    expect(inspect.Digest).toBe(image.manifestDigest);
    expect(inspect.Layers).toEqual(image.layers.map((layer) => layer.digest));
    expect(inspect.Labels).toEqual({ seed: 'interop' });
    expect(await skopeo('inspect', '--raw', `dir:${directory}`)).toBe(
      new TextDecoder().decode(image.manifest),
    );

    const layout = path.join(top, 'ours-hand-oci');
    // oci: cannot store signatures; skopeo refuses unless told to drop them.
    await expect(skopeo('copy', '--insecure-policy', `dir:${directory}`, `oci:${layout}:t`)).rejects.toThrow(
      'Pushing signatures for OCI images is not supported',
    );
    await skopeo('copy', '--insecure-policy', '--remove-signatures', `dir:${directory}`, `oci:${layout}:t`);
    expect(await ociLayoutTopDigest(layout)).toBe(image.manifestDigest);

    // skopeo reads our signature-N files: a dir: to dir: copy carries them over.
    const copy = path.join(top, 'ours-hand-copy');
    await skopeo('copy', '--insecure-policy', `dir:${directory}`, `dir:${copy}`);
    expect(new Uint8Array(await readFile(path.join(copy, 'signature-1')))).toEqual(signatures[0]);
    expect(new Uint8Array(await readFile(path.join(copy, 'signature-2')))).toEqual(signatures[1]);
    expect(await readFile(path.join(copy, 'manifest.json'))).toEqual(Buffer.from(image.manifest));
  });

  it.each(presetNames)(
    'preset %s: skopeo reads it and copies it keeping the manifest digest',
    async (name) => {
      const fixture = fixtures.get(name)!;
      const directory = path.join(top, `ours-${name}`);
      await writeFixtureToDestination(
        fixture,
        await transport.parseReference(directory).newImageDestination(),
      );
      expect(await readFile(path.join(directory, 'manifest.json'))).toEqual(
        Buffer.from(fixture.topLevel.bytes),
      );
      expect(await skopeo('inspect', '--raw', `dir:${directory}`)).toBe(
        new TextDecoder().decode(fixture.topLevel.bytes),
      );
      const isList = listPresetNames.includes(name);
      if (!isList) {
        const inspect = JSON.parse(await skopeo('inspect', `dir:${directory}`)) as Record<string, unknown>;
        expect(inspect.Digest).toBe(fixture.topLevel.digest);
        expect(inspect.Layers).toEqual(fixture.images[0]!.layerDigests);
      } else {
        for (const single of fixture.images) {
          const instance = await readFile(
            path.join(directory, `${digestHex(single.manifestDigest)}.manifest.json`),
          );
          expect(digestOf(instance)).toBe(single.manifestDigest);
        }
      }
      const all = isList ? ['--all'] : [];
      if (fixture.topLevel.mediaType.startsWith('application/vnd.oci.')) {
        // skopeo's oci: destination takes OCI manifests as they are, so the digest must survive.
        const layout = path.join(top, `ours-${name}-oci`);
        const keepLayers = ['--dest-oci-accept-uncompressed-layers'];
        await skopeo(
          'copy',
          '--insecure-policy',
          ...all,
          ...keepLayers,
          `dir:${directory}`,
          `oci:${layout}:t`,
        );
        expect(await ociLayoutTopDigest(layout)).toBe(fixture.topLevel.digest);
      } else {
        // Docker manifests would be converted by oci:, so copy dir: to dir: and compare bytes.
        const copy = path.join(top, `ours-${name}-copy`);
        await skopeo('copy', '--insecure-policy', ...all, `dir:${directory}`, `dir:${copy}`);
        expect(await readFile(path.join(copy, 'manifest.json'))).toEqual(Buffer.from(fixture.topLevel.bytes));
      }
    },
  );

  it('skopeo may overwrite a directory written by Gantry (the version file marks it as a dir: image)', async () => {
    const directory = path.join(top, 'ours-then-skopeo');
    await writeHandBuiltImage(
      await transport.parseReference(directory).newImageDestination(),
      handBuiltImage('first'),
    );
    const fixture = fixtures.get('ociMinimal')!;
    const layout = path.join(top, 'layout-for-overwrite');
    await writeFixtureToOciLayout(fixture, layout, 't');
    await skopeo('copy', '--insecure-policy', `oci:${layout}:t`, `dir:${directory}`);
    expect(await readFile(path.join(directory, 'manifest.json'))).toEqual(
      Buffer.from(fixture.topLevel.bytes),
    );
  });
});

describe('images written by skopeo, read by the dir: source', () => {
  async function expectSameAsSkopeoWrote(directory: string, fixture: FixtureImage): Promise<void> {
    const source = await transport.parseReference(directory).newImageSource();
    try {
      const manifest = await source.getManifest();
      expect(Buffer.from(manifest.bytes)).toEqual(await readFile(path.join(directory, 'manifest.json')));
      expect(Buffer.from(manifest.bytes)).toEqual(Buffer.from(fixture.topLevel.bytes));
      for (const single of fixture.images) {
        if (single.manifestDigest !== fixture.topLevel.digest) {
          const instance = await source.getManifest(single.manifestDigest);
          expect(digestOf(instance.bytes)).toBe(single.manifestDigest);
        }
        for (const digest of [single.configDigest, ...single.layerDigests]) {
          const { stream, size } = await source.getBlob({ digest, size: -1 });
          const bytes = await readAll(stream);
          expect(size).toBe(bytes.length);
          expect(bytes).toEqual(await readFile(fixture.blobs.get(digest)!.path));
        }
      }
      expect(await source.getSignatures()).toEqual([]);
    } finally {
      await source.close();
    }
  }

  it.each(presetNames)('preset %s written by skopeo is read byte for byte', async (name) => {
    const fixture = fixtures.get(name)!;
    const directory = path.join(top, `skopeo-${name}`);
    const all = listPresetNames.includes(name) ? ['--all'] : [];
    let from: string;
    if (fixture.topLevel.mediaType.startsWith('application/vnd.oci.')) {
      from = `oci:${path.join(top, `layout-${name}`)}:t`;
      await writeFixtureToOciLayout(fixture, from.slice(4, -2), 't');
    } else {
      // This skopeo's oci: source only lists OCI manifests in index.json, so docker images come from a
      // dir: written by Gantry (skopeo still writes the destination).
      from = `dir:${path.join(top, `gantry-${name}`)}`;
      await writeFixtureToDestination(
        fixture,
        await transport.parseReference(from.slice(4)).newImageDestination(),
      );
    }
    await skopeo(
      'copy',
      '--insecure-policy',
      '--dest-oci-accept-uncompressed-layers',
      ...all,
      from,
      `dir:${directory}`,
    );
    expect(await readFile(path.join(directory, 'version'), 'utf8')).toBe(
      'Directory Transport Version: 1.1\n',
    );
    await expectSameAsSkopeoWrote(directory, fixture);
  });

  it('a hand-built image with signatures, copied by skopeo from dir: to dir:', async () => {
    const image = handBuiltImage('from-skopeo', 3);
    const ours = path.join(top, 'hand-ours');
    await writeHandBuiltImage(await transport.parseReference(ours).newImageDestination(), image, {
      signatures: [fakeSignature('sig A')],
    });
    const directory = path.join(top, 'hand-skopeo');
    await skopeo('copy', '--insecure-policy', `dir:${ours}`, `dir:${directory}`);
    const names = (await readdir(directory)).sort();
    expect(names).toEqual(
      [
        'manifest.json',
        'signature-1',
        'version',
        digestHex(image.config.digest),
        ...image.layers.map((layer) => digestHex(layer.digest)),
      ].sort(),
    );
    const source = await transport.parseReference(directory).newImageSource();
    try {
      expect((await source.getManifest()).bytes).toEqual(image.manifest);
      expect(await source.getSignatures()).toEqual([fakeSignature('sig A')]);
    } finally {
      await source.close();
    }
  });

  it('Gantry overwrites a directory skopeo wrote, and refuses one skopeo would refuse too', async () => {
    const fixture = fixtures.get('ociMinimal')!;
    const layout = path.join(top, 'layout-overwrite-2');
    await writeFixtureToOciLayout(fixture, layout, 't');
    const directory = path.join(top, 'skopeo-then-ours');
    await skopeo('copy', '--insecure-policy', `oci:${layout}:t`, `dir:${directory}`);
    const image = handBuiltImage('replacement');
    await writeHandBuiltImage(await transport.parseReference(directory).newImageDestination(), image);
    expect(JSON.parse(await skopeo('inspect', `dir:${directory}`)).Digest).toBe(image.manifestDigest);
    expect((await readdir(directory)).length).toBe(2 + 1 + image.layers.length); // version, manifest, config, layers

    const precious = path.join(top, 'precious');
    await mkdir(precious);
    await writeFile(path.join(precious, 'data.txt'), 'do not touch');
    await expect(skopeo('copy', '--insecure-policy', `oci:${layout}:t`, `dir:${precious}`)).rejects.toThrow(
      "not a containers image directory, don't want to overwrite important data",
    );
    await expect(transport.parseReference(precious).newImageDestination()).rejects.toMatchObject({
      code: ErrorCodes.InvalidLayout,
    });
    expect(await readdir(precious)).toEqual(['data.txt']);
  });
});
