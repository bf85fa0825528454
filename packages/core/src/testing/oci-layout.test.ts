import { execFile } from 'node:child_process';
import { lstat, mkdtemp, readFile, readlink, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFixtureImage } from './fixture-builder.js';
import { type FixturePresetName, fixturePresets } from './fixture-presets.js';
import type { FixtureImage } from './fixture-types.js';
import { ociRefNameAnnotation, writeFixtureToOciLayout } from './oci-layout.js';

const run = promisify(execFile);

/** Runs a required interop tool; a missing tool fails the test loudly instead of skipping it. */
async function tool(command: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(command, args, { maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT')
      throw new Error(`${command} is required for this test but is not installed`);
    throw new Error(`${command} ${args.join(' ')} failed: ${failure.stderr ?? failure.message}`);
  }
}

let temporaryRoot: string;
let layout: string;
const built = new Map<FixturePresetName, FixtureImage>();
const presetNames = Object.keys(fixturePresets) as FixturePresetName[];
const isDockerFormat = (name: FixturePresetName) => fixturePresets[name].format === 'docker';

beforeAll(async () => {
  temporaryRoot = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
  layout = path.join(temporaryRoot, 'layout');
  for (const name of presetNames) {
    const image = await buildFixtureImage(fixturePresets[name], {
      directory: path.join(temporaryRoot, 'blobs'),
    });
    built.set(name, image);
    await writeFixtureToOciLayout(image, layout, name);
  }
});
afterAll(async () => {
  await rm(temporaryRoot, { recursive: true, force: true });
});

describe('writeFixtureToOciLayout', () => {
  it('writes oci-layout, index.json with one named entry per preset, and every blob and manifest', async () => {
    expect(JSON.parse(await readFile(path.join(layout, 'oci-layout'), 'utf8'))).toEqual({
      imageLayoutVersion: '1.0.0',
    });
    const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'));
    expect(index.schemaVersion).toBe(2);
    expect(
      index.manifests.map(
        (entry: { annotations: Record<string, string> }) => entry.annotations[ociRefNameAnnotation],
      ),
    ).toEqual(presetNames);
    for (const [name, image] of built) {
      const entry = index.manifests.find(
        (candidate: { annotations: Record<string, string> }) =>
          candidate.annotations[ociRefNameAnnotation] === name,
      );
      expect(entry).toMatchObject({
        mediaType: image.topLevel.mediaType,
        digest: image.topLevel.digest,
        size: image.topLevel.bytes.byteLength,
      });
      for (const digest of [...image.blobs.keys(), ...image.manifests.keys()]) {
        await stat(path.join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length)));
      }
    }
  });

  it('replaces the entry with the same name and keeps the others', async () => {
    const directory = path.join(temporaryRoot, 'replace');
    await writeFixtureToOciLayout(built.get('ociMinimal')!, directory, 'x');
    await writeFixtureToOciLayout(built.get('dockerSchema2')!, directory, 'y');
    await writeFixtureToOciLayout(built.get('whiteoutLayers')!, directory, 'x');
    await writeFixtureToOciLayout(built.get('whiteoutLayers')!, directory);
    await writeFixtureToOciLayout(built.get('whiteoutLayers')!, directory);
    const index = JSON.parse(await readFile(path.join(directory, 'index.json'), 'utf8'));
    expect(
      index.manifests.map((entry: { digest: string; annotations?: Record<string, string> }) => [
        entry.annotations?.[ociRefNameAnnotation],
        entry.digest,
      ]),
    ).toEqual([
      ['y', built.get('dockerSchema2')!.topLevel.digest],
      ['x', built.get('whiteoutLayers')!.topLevel.digest],
      [undefined, built.get('whiteoutLayers')!.topLevel.digest],
    ]);
  });

  it('umoci ls lists every preset', async () => {
    const listed = (await tool('umoci', ['ls', '--layout', layout])).trim().split('\n').sort();
    expect(listed).toEqual([...presetNames].sort());
  });

  it.each(presetNames.filter((name) => !isDockerFormat(name)))(
    'skopeo inspects and copies (verifying every blob) the OCI preset %s',
    async (name) => {
      const image = built.get(name)!;
      const raw = await tool('skopeo', ['inspect', '--raw', `oci:${layout}:${name}`]);
      expect(Buffer.from(raw)).toEqual(Buffer.from(image.topLevel.bytes));
      const inspected = JSON.parse(await tool('skopeo', ['inspect', `oci:${layout}:${name}`]));
      expect(inspected.Digest).toBe(image.topLevel.digest);
      const amd64 = image.images.find((single) => single.platform.architecture === 'amd64')!;
      expect(inspected.Layers).toEqual(amd64.layerDigests);
      const copy = path.join(temporaryRoot, `copy-${name}`);
      await tool('skopeo', ['copy', '--all', '--preserve-digests', `oci:${layout}:${name}`, `dir:${copy}`]);
      expect(await readFile(path.join(copy, 'manifest.json'))).toEqual(Buffer.from(image.topLevel.bytes));
    },
  );

  // skopeo 1.9 (containers/image 5.23) only considers index.json entries whose mediaType is an OCI
  // manifest or index; Docker-format manifests written faithfully into a layout are not found by it.
  it.each(presetNames.filter(isDockerFormat))(
    'skopeo 1.9 does not find the Docker preset %s by name',
    async (name) => {
      await expect(tool('skopeo', ['inspect', '--raw', `oci:${layout}:${name}`])).rejects.toThrow(
        /no descriptor found for reference/,
      );
    },
  );

  it('umoci unpacks the layers with whiteouts, opaque directories, links and long names applied', async () => {
    const everyEntry = path.join(temporaryRoot, 'bundle-every');
    await tool('umoci', ['unpack', '--rootless', '--image', `${layout}:everyEntryType`, everyEntry]);
    const root = path.join(everyEntry, 'rootfs');
    await expect(stat(path.join(root, 'var/doomed'))).rejects.toThrow(/ENOENT/);
    await expect(stat(path.join(root, 'var/cache/old'))).rejects.toThrow(/ENOENT/);
    expect(await readFile(path.join(root, 'var/cache/new'), 'utf8')).toBe('new\n');
    expect(await readlink(path.join(root, 'usr/bin/tool-link'))).toBe('tool');
    expect((await lstat(path.join(root, 'etc/hosts-hardlink'))).ino).toBe(
      (await lstat(path.join(root, 'etc/hosts'))).ino,
    );
    expect((await stat(path.join(root, 'usr/random.bin'))).size).toBe(100_000);

    const whiteouts = path.join(temporaryRoot, 'bundle-whiteouts');
    await tool('umoci', ['unpack', '--rootless', '--image', `${layout}:whiteoutLayers`, whiteouts]);
    const appFiles = await tool('find', [path.join(whiteouts, 'rootfs', 'app'), '-mindepth', '1']);
    expect(
      appFiles
        .trim()
        .split('\n')
        .map((file) => path.basename(file))
        .sort(),
    ).toEqual(['added.txt', 'keep.txt']);

    const names = path.join(temporaryRoot, 'bundle-names');
    await tool('umoci', ['unpack', '--rootless', '--image', `${layout}:longAndNonAsciiNames`, names]);
    expect(await readFile(path.join(names, 'rootfs', 'données', '日本語のファイル.txt'), 'utf8')).toBe(
      'こんにちは\n',
    );
  });
});
