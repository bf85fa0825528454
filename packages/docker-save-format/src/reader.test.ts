import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { gunzipSync, gzipSync } from 'node:zlib';
import {
  buildFixtureImage,
  type FixtureImage,
  fixturePresets,
  writeFixtureToOciLayout,
} from '@gantry/core/testing';
import {
  type Digest,
  digestHex,
  digestOf,
  ErrorCodes,
  hasErrorCode,
  MediaTypes,
  parseNormalizedNamed,
} from '@gantry/core/transport';
import { buildRawTar } from '@gantry/tar-archive/test-support';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { listArchiveImages, openDockerArchive, openDockerArchiveFromStream } from './reader.js';

let directory: string;
beforeEach(async () => {
  directory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
});
afterEach(async () => {
  await rm(directory, { recursive: true, force: true });
});

function tool(name: string, args: string[]): string {
  try {
    return execFileSync(name, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT') throw new Error(`${name} is required by this test but is not installed`);
    throw new Error(`${name} ${args.join(' ')} failed: ${failure.stderr ?? failure.message}`);
  }
}

async function fixture(name: keyof typeof fixturePresets = 'dockerSchema2'): Promise<FixtureImage> {
  return buildFixtureImage(fixturePresets[name], { directory: path.join(directory, `fixture-${name}`) });
}

/** The uncompressed layers and the config of a single-image fixture. */
async function imageParts(image: FixtureImage) {
  const summary = image.images[0]!;
  const config = await readFile(image.blobs.get(summary.configDigest)!.path);
  const layers = await Promise.all(
    summary.layerDigests.map(async (digest) => {
      const bytes = await readFile(image.blobs.get(digest)!.path);
      return bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes) : bytes;
    }),
  );
  return { summary, config, layers };
}

/** Writes files (path → content or `{ symlink }`) under a directory and tars it with GNU tar. */
async function tarTree(files: Record<string, Uint8Array | string | { symlink: string }>): Promise<string> {
  const tree = await mkdtemp(path.join(directory, 'tree-'));
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(tree, name)), { recursive: true });
    if (typeof content === 'object' && 'symlink' in content)
      await symlink(content.symlink, path.join(tree, name));
    else await writeFile(path.join(tree, name), content);
  }
  const archive = `${tree}.tar`;
  tool('tar', ['-cf', archive, '-C', tree, '.']);
  return archive;
}

async function expectCode(operation: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  const error = await operation.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error, 'expected a rejection').toBeDefined();
  expect(hasErrorCode(error, code as never), String(error)).toBe(true);
  expect((error as Error).message).toMatch(pattern);
}

describe('reading archives skopeo writes', () => {
  it('reads an image written by skopeo copy, with the manifest skopeo generates', async () => {
    const image = await fixture('uncompressedLayers');
    await writeFixtureToOciLayout(image, path.join(directory, 'layout'), 't');
    const archive = path.join(directory, 'skopeo.tar');
    tool('skopeo', [
      'copy',
      '--insecure-policy',
      `oci:${directory}/layout:t`,
      `docker-archive:${archive}:example.com/app:v1`,
    ]);
    const reader = await openDockerArchive(archive);
    try {
      expect(listArchiveImages(reader).map((entry) => entry.repoTags.map(String))).toEqual([
        ['example.com/app:v1'],
      ]);
      const chosen = reader.chooseImage(parseNormalizedNamed('example.com/app:v1'));
      expect(chosen).toEqual({ index: 0, tagIndex: 0 });
      const loaded = await reader.loadImage(chosen.index);
      const summary = image.images[0]!;
      expect(loaded.configDigest).toBe(summary.configDigest);
      expect(loaded.layers.map((layer) => layer.diffId)).toEqual(summary.diffIds);
      const raw = tool('skopeo', ['inspect', '--raw', `docker-archive:${archive}`]);
      expect(loaded.manifestBytes.toString()).toBe(raw);
      for (const layer of loaded.layers) {
        const bytes = await buffer(reader.openLayer(layer).stream);
        expect(digestOf(bytes)).toBe(layer.diffId);
        expect(bytes.length).toBe(layer.size);
      }
    } finally {
      await reader.close();
    }
  });

  it('chooses among several images by tag or @N, and reports unknown ones', async () => {
    const first = await fixture('ociMinimal');
    const second = await fixture('uncompressedLayers');
    await writeFixtureToOciLayout(first, path.join(directory, 'one'), 't');
    await writeFixtureToOciLayout(second, path.join(directory, 'two'), 't');
    // Two images in one archive, as `docker save a b` writes: merge two skopeo archives by hand.
    const firstArchive = path.join(directory, 'first.tar');
    const secondArchive = path.join(directory, 'second.tar');
    tool('skopeo', [
      'copy',
      '--insecure-policy',
      `oci:${directory}/one:t`,
      `docker-archive:${firstArchive}:one:latest`,
    ]);
    tool('skopeo', [
      'copy',
      '--insecure-policy',
      `oci:${directory}/two:t`,
      `docker-archive:${secondArchive}`,
    ]);
    const merged = path.join(directory, 'merged');
    await mkdir(merged);
    tool('tar', ['-xf', firstArchive, '-C', merged]);
    tool('tar', [
      '-xf',
      secondArchive,
      '-C',
      merged,
      '--exclude',
      'manifest.json',
      '--exclude',
      'repositories',
    ]);
    const items = [
      ...JSON.parse(tool('tar', ['-xOf', firstArchive, 'manifest.json'])),
      ...JSON.parse(tool('tar', ['-xOf', secondArchive, 'manifest.json'])),
    ];
    await writeFile(path.join(merged, 'manifest.json'), JSON.stringify(items));
    const archive = path.join(directory, 'multi.tar');
    tool('tar', ['-cf', archive, '-C', merged, '.']);

    const reader = await openDockerArchive(archive);
    try {
      expect(() => reader.chooseImage(undefined)).toThrow(/expected 1 item, got 2/);
      expect(reader.chooseImage(parseNormalizedNamed('one:latest'))).toEqual({ index: 0, tagIndex: 0 });
      expect(reader.chooseImage(undefined, 1)).toEqual({ index: 1, tagIndex: -1 });
      expect(() => reader.chooseImage(undefined, 2)).toThrow(
        /Invalid source index @2, only 2 manifest items/,
      );
      expect(() => reader.chooseImage(parseNormalizedNamed('other:tag'))).toThrow(
        /Tag "docker.io\/library\/other:tag" not found/,
      );
      expect((await reader.loadImage(1)).configDigest).toBe(second.images[0]!.configDigest);
      expect((await reader.loadImage(0)).configDigest).toBe(first.images[0]!.configDigest);
    } finally {
      await reader.close();
    }
  });
});

describe('archive layouts docker writes', () => {
  it('reads the legacy layout (<id>/layer.tar, <id>/json, VERSION) with a repeated layer as a symlink', async () => {
    const { summary, config, layers } = await imageParts(await fixture());
    const configHex = digestHex(summary.configDigest);
    const ids = ['a'.repeat(64), 'b'.repeat(64), 'c'.repeat(64)];
    // The config lists the first layer twice, like an image whose last layer repeats the first.
    const configJson = JSON.parse(config.toString());
    configJson.rootfs.diff_ids = [...summary.diffIds, summary.diffIds[0]];
    const configBytes = Buffer.from(JSON.stringify(configJson));
    const archive = await tarTree({
      [`${digestHex(digestOf(configBytes))}.json`]: configBytes,
      [`${ids[0]}/layer.tar`]: layers[0]!,
      [`${ids[0]}/json`]: '{}',
      [`${ids[0]}/VERSION`]: '1.0',
      [`${ids[1]}/layer.tar`]: layers[1]!,
      [`${ids[2]}/layer.tar`]: { symlink: `../${ids[0]}/layer.tar` },
      'manifest.json': JSON.stringify([
        {
          Config: `${digestHex(digestOf(configBytes))}.json`,
          RepoTags: ['busybox:latest'],
          Layers: ids.map((id) => `${id}/layer.tar`),
        },
      ]),
      repositories: JSON.stringify({ busybox: { latest: ids[2] } }),
    });
    expect(configHex).not.toBe('');
    const reader = await openDockerArchive(archive);
    try {
      const loaded = await reader.loadImage(
        reader.chooseImage(parseNormalizedNamed('docker.io/library/busybox:latest')).index,
      );
      expect(loaded.layers.map((layer) => layer.diffId)).toEqual([...summary.diffIds, summary.diffIds[0]]);
      const manifest = JSON.parse(loaded.manifestBytes.toString());
      expect(manifest.layers).toHaveLength(3);
      expect(manifest.config).toEqual({
        mediaType: MediaTypes.DockerConfig,
        size: configBytes.length,
        digest: digestOf(configBytes),
      });
    } finally {
      await reader.close();
    }
  });

  it('reads the docker 25+ layout (blobs/sha256 plus manifest.json) and gzip-compressed layers', async () => {
    const { summary, config, layers } = await imageParts(await fixture());
    const compressed = gzipSync(layers[1]!);
    const compressedDigest = digestOf(compressed);
    const blob = (digest: Digest) => `blobs/sha256/${digestHex(digest)}`;
    const archive = await tarTree({
      'oci-layout': '{"imageLayoutVersion":"1.0.0"}',
      'index.json': '{"schemaVersion":2,"manifests":[]}',
      [blob(summary.configDigest)]: config,
      [blob(summary.diffIds[0]!)]: layers[0]!,
      [blob(compressedDigest)]: compressed,
      'manifest.json': JSON.stringify([
        {
          Config: blob(summary.configDigest),
          RepoTags: null,
          Layers: [blob(summary.diffIds[0]!), blob(compressedDigest)],
        },
      ]),
    });
    const reader = await openDockerArchive(archive);
    try {
      const loaded = await reader.loadImage(0);
      expect(loaded.repoTags).toEqual([]);
      expect(loaded.layers.map((layer) => layer.compression)).toEqual(['none', 'gzip']);
      expect(loaded.layers[1]!.size).toBe(layers[1]!.length);
      expect(loaded.layers[1]!.storedSize).toBe(compressed.length);
      const decompressed = await buffer(reader.openLayer(loaded.layers[1]!).stream);
      expect(digestOf(decompressed)).toBe(summary.diffIds[1]);
    } finally {
      await reader.close();
    }
  });

  it('learns the sizes of many gzip layers, a few at once, and names a corrupt one', async () => {
    const contents = Array.from({ length: 7 }, (_, index) =>
      Buffer.from(`layer ${index} `.repeat(5_000 + index * 1_000)),
    );
    const diffIds = contents.map((bytes) => digestOf(bytes));
    const build = (corruptIndex: number | undefined) => {
      const files: Record<string, Uint8Array | string> = {};
      const layerPaths = contents.map((bytes, index) => {
        let stored: Uint8Array = index === 3 ? bytes : gzipSync(bytes);
        if (index === corruptIndex) {
          stored = Buffer.from(stored);
          stored.fill(0x55, 20, 60); // the deflate data, after the gzip header
        }
        const name = `layer-${index}.tar${index === 3 ? '' : '.gz'}`;
        files[name] = stored;
        return name;
      });
      const config = Buffer.from(
        JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } }),
      );
      files[`${digestHex(digestOf(config))}.json`] = config;
      files['manifest.json'] = JSON.stringify([
        { Config: `${digestHex(digestOf(config))}.json`, RepoTags: null, Layers: layerPaths },
      ]);
      return tarTree(files);
    };
    const reader = await openDockerArchive(await build(undefined));
    try {
      const loaded = await reader.loadImage(0);
      expect(loaded.layers.map((layer) => layer.path)).toEqual(
        contents.map((_bytes, index) => `layer-${index}.tar${index === 3 ? '' : '.gz'}`),
      );
      expect(loaded.layers.map((layer) => layer.compression)).toEqual([
        'gzip',
        'gzip',
        'gzip',
        'none',
        'gzip',
        'gzip',
        'gzip',
      ]);
      expect(loaded.layers.map((layer) => layer.size)).toEqual(contents.map((bytes) => bytes.length));
      for (const [index, layer] of loaded.layers.entries()) {
        expect((await buffer(reader.openLayer(layer).stream)).equals(contents[index]!)).toBe(true);
      }
    } finally {
      await reader.close();
    }
    const corrupt = await openDockerArchive(await build(5));
    try {
      await expect(corrupt.loadImage(0)).rejects.toThrow(/layer-5\.tar\.gz/);
    } finally {
      await corrupt.close();
    }
  });

  it('reads a gzip-compressed archive and an archive from a stream', async () => {
    const image = await fixture('ociMinimal');
    await writeFixtureToOciLayout(image, path.join(directory, 'layout'), 't');
    const archive = path.join(directory, 'a.tar');
    tool('skopeo', ['copy', '--insecure-policy', `oci:${directory}/layout:t`, `docker-archive:${archive}`]);
    const gzipped = `${archive}.gz`;
    await writeFile(gzipped, gzipSync(await readFile(archive)));
    for (const reader of [
      await openDockerArchive(gzipped, { temporaryDirectory: directory }),
      await openDockerArchiveFromStream((await import('node:fs')).createReadStream(archive)),
    ]) {
      try {
        expect((await reader.loadImage(0)).configDigest).toBe(image.images[0]!.configDigest);
      } finally {
        await reader.close();
      }
    }
  });
});

describe('large archives', () => {
  it('opens and loads an image with a 3 GiB layer in well under a second (headers only, no hashing)', async () => {
    const layerSize = 3 * 1024 * 1024 * 1024;
    const diffId = digestOf('stand-in DiffID: the layer is never read while loading');
    const config = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [diffId] } }),
    );
    const configName = `${digestHex(digestOf(config))}.json`;
    const manifest = JSON.stringify([
      { Config: configName, RepoTags: ['big:latest'], Layers: ['layer.tar'] },
    ]);
    // The layer's data is a hole in a sparse file: no disk space, and nothing to read.
    const head = buildRawTar([{ name: 'layer.tar', size: layerSize }], { endBlocks: false });
    const tail = buildRawTar([
      { name: configName, data: config },
      { name: 'manifest.json', data: manifest },
    ]);
    const archive = path.join(directory, 'big.tar');
    const handle = await (await import('node:fs/promises')).open(archive, 'w');
    await handle.write(head, 0, head.length, 0);
    await handle.write(tail, 0, tail.length, head.length + layerSize);
    await handle.close();
    const started = performance.now();
    const reader = await openDockerArchive(archive);
    const loaded = await reader.loadImage(reader.chooseImage(parseNormalizedNamed('big:latest')).index);
    const elapsed = performance.now() - started;
    await reader.close();
    expect(loaded.layers[0]).toMatchObject({ diffId, size: layerSize, compression: 'none' });
    expect(elapsed).toBeLessThan(500);
  });
});

describe('hostile and malformed archives', () => {
  async function partsArchive(overrides: {
    manifest?: unknown;
    extra?: Record<string, Uint8Array | string | { symlink: string }>;
    config?: Buffer;
  }) {
    const { summary, config, layers } = await imageParts(await fixture());
    const configBytes = overrides.config ?? config;
    const configName = `${digestHex(digestOf(configBytes))}.json`;
    return {
      summary,
      archive: await tarTree({
        [configName]: configBytes,
        'l0.tar': layers[0]!,
        'l1.tar': layers[1]!,
        'manifest.json': JSON.stringify(
          overrides.manifest ?? [{ Config: configName, RepoTags: ['a:b'], Layers: ['l0.tar', 'l1.tar'] }],
        ),
        ...overrides.extra,
      }),
      configName,
    };
  }

  it('refuses layer paths that leave the archive or are absolute', async () => {
    const { archive: escaping } = await partsArchive({
      manifest: [{ Config: 'x.json', RepoTags: [], Layers: ['../../etc/passwd'] }],
    });
    const reader = await openDockerArchive(escaping);
    await expectCode(
      reader.loadImage(0),
      ErrorCodes.InvalidLayout,
      /invalid config path "x.json"|config "x.json" is not in the archive/,
    );
    await reader.close();
    const { archive, configName } = await partsArchive({});
    const manifest = [{ Config: configName, RepoTags: [], Layers: ['../l0.tar', '/l1.tar'] }];
    const { archive: second } = await partsArchive({ manifest });
    expect(archive).not.toBe(second);
    const secondReader = await openDockerArchive(second);
    await expectCode(
      secondReader.loadImage(0),
      ErrorCodes.InvalidLayout,
      /invalid layer path "\.\.\/l0\.tar".*"\.\." component/,
    );
    await secondReader.close();
  });

  it('refuses a layer that is a symlink pointing outside the archive', async () => {
    const { archive } = await partsArchive({ extra: { 'evil/layer.tar': { symlink: '../../outside.tar' } } });
    await expectCode(
      openDockerArchive(archive),
      ErrorCodes.InvalidLayout,
      /"evil\/layer\.tar".*points outside the archive/,
    );
  });

  it('refuses missing layers, layer-count mismatches and a config whose name is not its digest', async () => {
    const { configName, archive: missing } = await partsArchive({
      manifest: [{ Config: 'placeholder', RepoTags: [], Layers: [] }],
    });
    expect(missing).toBeTruthy();
    const cases: Array<[unknown, RegExp]> = [
      [
        [{ Config: configName, RepoTags: [], Layers: ['l0.tar', 'nope.tar'] }],
        /layer "nope\.tar" is not in the archive/,
      ],
      [
        [{ Config: configName, RepoTags: [], Layers: ['l0.tar'] }],
        /Inconsistent layer count.*1 in manifest, 2 in config/,
      ],
      [
        [{ Config: configName, RepoTags: [], Layers: ['l0.tar', 'l0.tar'] }],
        /Layer tarfile "l0\.tar" in .* used for two different DiffID values/,
      ],
      [[{ Config: 'l0.tar', RepoTags: [], Layers: [] }], /invalid image config "l0\.tar"/],
    ];
    for (const [manifest, pattern] of cases) {
      const { archive } = await partsArchive({ manifest });
      const reader = await openDockerArchive(archive);
      await expectCode(reader.loadImage(0), ErrorCodes.InvalidLayout, pattern);
      await reader.close();
    }
    const { archive: renamed } = await partsArchive({
      manifest: [{ Config: `${'0'.repeat(64)}.json`, RepoTags: [], Layers: ['l0.tar', 'l1.tar'] }],
      extra: { [`${'0'.repeat(64)}.json`]: '{"rootfs":{"type":"layers","diff_ids":[]}}' },
    });
    const reader = await openDockerArchive(renamed);
    await expectCode(
      reader.loadImage(0),
      ErrorCodes.InvalidLayout,
      /has digest sha256:.*not the one its name says/,
    );
    await reader.close();
  });

  it('refuses an uncompressed blobs/sha256 layer whose name is not its DiffID', async () => {
    const { summary, config, layers } = await imageParts(await fixture());
    const wrong = `blobs/sha256/${'e'.repeat(64)}`;
    const archive = await tarTree({
      [`blobs/sha256/${digestHex(summary.configDigest)}`]: config,
      [wrong]: layers[0]!,
      'l1.tar': layers[1]!,
      'manifest.json': JSON.stringify([
        {
          Config: `blobs/sha256/${digestHex(summary.configDigest)}`,
          RepoTags: [],
          Layers: [wrong, 'l1.tar'],
        },
      ]),
    });
    const reader = await openDockerArchive(archive);
    await expectCode(
      reader.loadImage(0),
      ErrorCodes.InvalidLayout,
      /is uncompressed but its name is not its DiffID/,
    );
    await reader.close();
  });

  it('refuses duplicate entries, truncated archives, a missing or huge manifest.json, and bad tags', async () => {
    await writeFile(
      path.join(directory, 'dup.tar'),
      buildRawTar([
        { name: 'manifest.json', data: '[]' },
        { name: 'manifest.json', data: '[{}]' },
      ]),
    );
    await expectCode(
      openDockerArchive(path.join(directory, 'dup.tar')),
      ErrorCodes.InvalidLayout,
      /"manifest\.json".*duplicate entry/,
    );

    const { archive } = await partsArchive({});
    const bytes = await readFile(archive);
    await writeFile(path.join(directory, 'truncated.tar'), bytes.subarray(0, 2048 + 100));
    await expectCode(
      openDockerArchive(path.join(directory, 'truncated.tar')),
      ErrorCodes.InvalidLayout,
      /truncated tar archive/,
    );

    await writeFile(path.join(directory, 'none.tar'), buildRawTar([{ name: 'other', data: 'x' }]));
    await expectCode(
      openDockerArchive(path.join(directory, 'none.tar')),
      ErrorCodes.InvalidLayout,
      /has no manifest\.json/,
    );

    await writeFile(
      path.join(directory, 'huge.tar'),
      buildRawTar([{ name: 'manifest.json', data: Buffer.alloc(2048, 0x20) }]),
    );
    await expectCode(
      openDockerArchive(path.join(directory, 'huge.tar'), { manifestSizeLimit: 1024 }),
      ErrorCodes.InvalidLayout,
      /"manifest\.json".*2048 bytes, more than the 1024-byte limit/,
    );

    await writeFile(
      path.join(directory, 'notarray.tar'),
      buildRawTar([{ name: 'manifest.json', data: '{"a":1}' }]),
    );
    await expectCode(
      openDockerArchive(path.join(directory, 'notarray.tar')),
      ErrorCodes.InvalidLayout,
      /not a JSON array/,
    );

    const { archive: badTag } = await partsArchive({
      manifest: [{ Config: 'x', RepoTags: ['UPPER:case'], Layers: [] }],
    });
    const reader = await openDockerArchive(badTag);
    expect(() => reader.repoTagsOf(0)).toThrow(/Invalid tag "UPPER:case" in manifest.json item @0/);
    await reader.close();
    await expectCode(
      openDockerArchive(path.join(directory, 'missing.tar')),
      ErrorCodes.ImageNotFound,
      /^stat .*missing\.tar: no such file or directory$/,
    );
  });
});
