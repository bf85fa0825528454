/**
 * Interoperability with the real tools: skopeo (containers/image) and umoci must read layouts Gantry
 * writes, and Gantry must read layouts skopeo writes, byte for byte. These tests fail (never skip) when a
 * tool is missing.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  buildFixtureImage,
  type FixtureImage,
  type FixturePresetName,
  fixturePresets,
  writeFixtureToDestination,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import { digestHex, digestOf, MediaTypes } from '@gantry/core/transport';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ociTransport } from './index.js';
import {
  buildTestImage,
  buildTestIndex,
  imageBlobs,
  readAll,
  temporaryDirectory,
  writeLayoutByHand,
  writeThroughDestination,
} from './test-support/images.js';

const execFileAsync = promisify(execFile);

async function run(tool: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(tool, args, { maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT')
      throw new Error(`${tool} is required by the interop tests but is not installed`);
    throw new Error(`${tool} ${args.join(' ')} failed: ${failure.stderr ?? failure.message}`);
  }
}

let directory = '';
let remove: () => Promise<void> = async () => {};
beforeEach(async () => {
  ({ directory, remove } = await temporaryDirectory());
});
afterEach(() => remove());

async function readViaGantry(reference: string, context = {}) {
  const source = await ociTransport.parseReference(reference).newImageSource(context);
  try {
    const manifest = await source.getManifest();
    return { source, manifest };
  } catch (error) {
    await source.close();
    throw error;
  }
}

describe('layouts written by Gantry', () => {
  it('are listed by umoci ls and inspected by skopeo', async () => {
    const layout = path.join(directory, 'layout');
    const first = buildTestImage({ layers: [{ a: 'a' }, { b: 'b' }], label: 'first' });
    const second = buildTestImage({ label: 'second' });
    const list = buildTestIndex([
      buildTestImage({ architecture: 'amd64', label: 'x86' }),
      buildTestImage({ architecture: 'arm64', label: 'arm' }),
    ]);
    await writeThroughDestination(
      await ociTransport.parseReference(`${layout}:first`).newImageDestination(),
      first,
    );
    await writeThroughDestination(
      await ociTransport.parseReference(`${layout}:v2.0`).newImageDestination(),
      second,
    );
    await writeThroughDestination(
      await ociTransport.parseReference(`${layout}:multi`).newImageDestination(),
      list,
    );

    const listed = (await run('umoci', ['ls', '--layout', layout])).trim().split('\n').sort();
    expect(listed).toEqual(['first', 'multi', 'v2.0']);

    const inspected = JSON.parse(await run('skopeo', ['inspect', `oci:${layout}:first`]));
    expect(inspected.Digest).toBe(first.manifest.digest);
    expect(inspected.Labels).toEqual({ 'test.label': 'first' });
    expect(inspected.Layers).toEqual(first.layers.map((layer) => layer.digest));
    const raw = await run('skopeo', ['inspect', '--raw', `oci:${layout}:v2.0`]);
    expect(raw).toBe(Buffer.from(second.manifest.bytes).toString());
    const rawList = await run('skopeo', ['inspect', '--raw', `oci:${layout}:multi`]);
    expect(rawList).toBe(Buffer.from(list.index.bytes).toString());
    const config = JSON.parse(await run('skopeo', ['inspect', '--config', `oci:${layout}:first`]));
    expect(config.architecture).toBe('amd64');

    // skopeo copies out of a Gantry layout, verifying every digest on the way.
    const copy = path.join(directory, 'copy');
    await run('skopeo', ['copy', '--insecure-policy', '--all', `oci:${layout}:multi`, `oci:${copy}:multi`]);
    const copied = await readFile(path.join(copy, 'blobs', 'sha256', digestHex(list.index.digest)));
    expect(copied.equals(Buffer.from(list.index.bytes))).toBe(true);
  });

  it('with a shared blob directory are read by skopeo with --src-shared-blob-dir', async () => {
    const shared = path.join(directory, 'shared');
    const layout = path.join(directory, 'layout');
    const image = buildTestImage();
    await writeThroughDestination(
      await ociTransport
        .parseReference(`${layout}:x`)
        .newImageDestination({ transportOptions: { oci: { sharedBlobDirectory: shared } } }),
      image,
    );
    const out = path.join(directory, 'out');
    await run('skopeo', [
      'copy',
      '--insecure-policy',
      '--src-shared-blob-dir',
      shared,
      `oci:${layout}:x`,
      `oci:${out}:x`,
    ]);
    expect(JSON.parse(await run('skopeo', ['inspect', `oci:${out}:x`])).Digest).toBe(image.manifest.digest);
  });
});

describe('layouts written by skopeo', () => {
  it('are read by Gantry with identical manifest bytes, for images and indexes', async () => {
    const handmade = path.join(directory, 'handmade');
    const image = buildTestImage({ layers: [{ one: '1' }, { two: '2' }] });
    const list = buildTestIndex([
      buildTestImage({ architecture: 'amd64', label: 'x86' }),
      buildTestImage({ architecture: 'arm64', label: 'arm' }),
    ]);
    await writeLayoutByHand(handmade, [
      { content: image, name: 't' },
      { content: list, name: 'multi' },
    ]);
    const copied = path.join(directory, 'copied');
    await run('skopeo', ['copy', '--insecure-policy', `oci:${handmade}:t`, `oci:${copied}:t`]);
    await run('skopeo', [
      'copy',
      '--insecure-policy',
      '--all',
      `oci:${handmade}:multi`,
      `oci:${copied}:multi`,
    ]);

    const index = JSON.parse(await readFile(path.join(copied, 'index.json'), 'utf8'));
    expect(index.manifests).toHaveLength(2);

    for (const name of ['t', 'multi']) {
      const skopeoRaw = await run('skopeo', ['inspect', '--raw', `oci:${copied}:${name}`]);
      const { source, manifest } = await readViaGantry(`${copied}:${name}`);
      try {
        expect(Buffer.from(manifest.bytes).toString()).toBe(skopeoRaw);
        const entry = index.manifests.find(
          (candidate: { annotations: Record<string, string> }) =>
            candidate.annotations['org.opencontainers.image.ref.name'] === name,
        );
        expect(digestOf(manifest.bytes)).toBe(entry.digest);
        expect(manifest.mediaType).toBe(name === 't' ? MediaTypes.OciManifest : MediaTypes.OciIndex);
      } finally {
        await source.close();
      }
    }

    // Blobs and instances of the skopeo-written layout stream back intact.
    const { source } = await readViaGantry(`${copied}:multi`);
    try {
      for (const instance of list.images) {
        const manifest = await source.getManifest(instance.manifest.digest);
        expect(manifest.mediaType).toBe(MediaTypes.OciManifest);
        expect(digestOf(manifest.bytes)).toBe(instance.manifest.digest);
        for (const blob of imageBlobs(instance)) {
          const { stream } = await source.getBlob({ digest: blob.digest, size: blob.bytes.byteLength });
          expect(digestOf(await readAll(stream))).toBe(blob.digest);
        }
      }
    } finally {
      await source.close();
    }
  });

  it('share a layout with Gantry: images each wrote stay listed', async () => {
    const handmade = path.join(directory, 'handmade');
    const fromSkopeo = buildTestImage({ label: 'skopeo' });
    await writeLayoutByHand(handmade, [{ content: fromSkopeo, name: 's' }]);
    const layout = path.join(directory, 'layout');
    const fromGantry = buildTestImage({ label: 'gantry' });
    await writeThroughDestination(
      await ociTransport.parseReference(`${layout}:g`).newImageDestination(),
      fromGantry,
    );
    await run('skopeo', ['copy', '--insecure-policy', `oci:${handmade}:s`, `oci:${layout}:s`]);
    const later = buildTestImage({ label: 'later' });
    await writeThroughDestination(
      await ociTransport.parseReference(`${layout}:later`).newImageDestination(),
      later,
    );
    expect((await run('umoci', ['ls', '--layout', layout])).trim().split('\n').sort()).toEqual([
      'g',
      'later',
      's',
    ]);
    for (const [name, image] of [
      ['g', fromGantry],
      ['s', fromSkopeo],
      ['later', later],
    ] as const) {
      expect(JSON.parse(await run('skopeo', ['inspect', `oci:${layout}:${name}`])).Digest).toBe(
        image.manifest.digest,
      );
    }
  });

  it('with --dest-shared-blob-dir are read by Gantry with transportOptions.oci.sharedBlobDirectory', async () => {
    const handmade = path.join(directory, 'handmade');
    const image = buildTestImage();
    await writeLayoutByHand(handmade, [{ content: image, name: 't' }]);
    const shared = path.join(directory, 'shared');
    const layout = path.join(directory, 'layout');
    await run('skopeo', [
      'copy',
      '--insecure-policy',
      '--dest-shared-blob-dir',
      shared,
      `oci:${handmade}:t`,
      `oci:${layout}:t`,
    ]);
    const { source, manifest } = await readViaGantry(`${layout}:t`, {
      transportOptions: { oci: { sharedBlobDirectory: shared } },
    });
    try {
      expect(digestOf(manifest.bytes)).toBe(image.manifest.digest);
      const { stream } = await source.getBlob({ digest: image.config.digest, size: -1 });
      expect(digestOf(await readAll(stream))).toBe(image.config.digest);
    } finally {
      await source.close();
    }
  });
});

/** Presets in OCI format: the ones an oci: destination stores as they are (no conversion). */
const ociPresets: FixturePresetName[] = (Object.keys(fixturePresets) as FixturePresetName[]).filter(
  (name) => (fixturePresets[name] as { format?: string }).format !== 'docker',
);

async function buildPreset(name: FixturePresetName): Promise<FixtureImage> {
  return buildFixtureImage(fixturePresets[name], { directory: path.join(directory, 'fixture-blobs') });
}

describe('fixture presets', () => {
  it('has OCI presets to test', () => {
    expect(ociPresets.length).toBeGreaterThanOrEqual(3);
    expect(ociPresets).toContain('multiArchOci');
  });

  for (const name of ociPresets) {
    it(`${name}: written by Gantry, listed by umoci and read by skopeo byte for byte`, async () => {
      const image = await buildPreset(name);
      const layout = path.join(directory, 'layout');
      await writeFixtureToDestination(
        image,
        await ociTransport.parseReference(`${layout}:${name}`).newImageDestination(),
      );
      expect((await run('umoci', ['ls', '--layout', layout])).trim()).toBe(name);
      const raw = await run('skopeo', ['inspect', '--raw', `oci:${layout}:${name}`]);
      expect(raw).toBe(Buffer.from(image.topLevel.bytes).toString());
      const copy = path.join(directory, 'copy');
      await run('skopeo', [
        'copy',
        '--insecure-policy',
        '--all',
        '--preserve-digests',
        `oci:${layout}:${name}`,
        `oci:${copy}:${name}`,
      ]);
      const copiedIndex = JSON.parse(await readFile(path.join(copy, 'index.json'), 'utf8'));
      expect(copiedIndex.manifests[0].digest).toBe(image.topLevel.digest);
    });

    it(`${name}: copied by skopeo, read by Gantry byte for byte`, async () => {
      const image = await buildPreset(name);
      const handmade = path.join(directory, 'handmade');
      await writeFixtureToOciLayout(image, handmade, 't');
      const copied = path.join(directory, 'copied');
      // --preserve-digests: skopeo would otherwise compress uncompressed layers (as Gantry does).
      await run('skopeo', [
        'copy',
        '--insecure-policy',
        '--all',
        '--preserve-digests',
        `oci:${handmade}:t`,
        `oci:${copied}:t`,
      ]);
      const skopeoRaw = await run('skopeo', ['inspect', '--raw', `oci:${copied}:t`]);
      const { source, manifest } = await readViaGantry(`${copied}:t`);
      try {
        expect(Buffer.from(manifest.bytes).toString()).toBe(skopeoRaw);
        expect(digestOf(manifest.bytes)).toBe(image.topLevel.digest);
        expect(manifest.mediaType).toBe(image.topLevel.mediaType);
        for (const [digest, expected] of image.manifests) {
          if (digest === image.topLevel.digest) continue;
          const instance = await source.getManifest(digest);
          expect(Buffer.from(instance.bytes).equals(Buffer.from(expected.bytes))).toBe(true);
          expect(instance.mediaType).toBe(expected.mediaType);
        }
        for (const blob of image.blobs.values()) {
          const read = await source.getBlob({ digest: blob.digest, size: blob.size });
          expect(read.size).toBe(blob.size);
          expect(digestOf(await readAll(read.stream))).toBe(blob.digest);
        }
      } finally {
        await source.close();
      }
    });
  }
});
