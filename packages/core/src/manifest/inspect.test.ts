import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Digest, digestHex, digestOf } from '../digest.js';
import { ErrorCodes } from '../errors.js';
import { buildInspectConfigOutput, buildInspectOutput, formatInspectJson } from './inspect.js';
import { MediaTypes } from './media-types.js';
import { type ImageManifest, parseManifest, parseManifestList } from './parse.js';
import { choosePlatformInstance } from './platform.js';

const encoder = new TextEncoder();
const bytesOf = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));

let workDirectory: string;
beforeAll(async () => {
  workDirectory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
});
afterAll(async () => {
  await rm(workDirectory, { recursive: true, force: true });
});

/** Runs the real skopeo and returns its stdout (fails loudly when it is missing or fails). */
function skopeo(...args: string[]): string {
  return execFileSync('skopeo', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

interface LayoutImage {
  tag: string;
  manifest: Uint8Array;
  mediaType: string;
}

/** Writes an OCI image layout by hand: blobs, oci-layout, index.json naming each image by tag. */
async function writeOciLayout(name: string, blobs: Uint8Array[], images: LayoutImage[]): Promise<string> {
  const directory = path.join(workDirectory, name);
  await mkdir(path.join(directory, 'blobs', 'sha256'), { recursive: true });
  await writeFile(path.join(directory, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  for (const blob of [...blobs, ...images.map((image) => image.manifest)]) {
    await writeFile(path.join(directory, 'blobs', 'sha256', digestHex(digestOf(blob))), blob);
  }
  const index = {
    schemaVersion: 2,
    manifests: images.map((image) => ({
      mediaType: image.mediaType,
      digest: digestOf(image.manifest),
      size: image.manifest.byteLength,
      annotations: { 'org.opencontainers.image.ref.name': image.tag },
    })),
  };
  await writeFile(path.join(directory, 'index.json'), JSON.stringify(index));
  return directory;
}

/** Writes a `dir:` image (any manifest type). */
async function writeDirImage(name: string, manifest: Uint8Array, blobs: Uint8Array[]): Promise<string> {
  const directory = path.join(workDirectory, name);
  await mkdir(directory);
  await writeFile(path.join(directory, 'version'), 'Directory Transport Version: 1.1\n');
  await writeFile(path.join(directory, 'manifest.json'), manifest);
  for (const blob of blobs) await writeFile(path.join(directory, digestHex(digestOf(blob))), blob);
  return directory;
}

const layer = encoder.encode('layer bytes, not a real tar');
const ociImage = (config: Uint8Array, layers: unknown[] = []) =>
  bytesOf({
    schemaVersion: 2,
    mediaType: MediaTypes.OciManifest,
    config: { mediaType: MediaTypes.OciConfig, digest: digestOf(config), size: config.byteLength },
    layers,
  });
const ociLayer = (annotations?: Record<string, string>) => ({
  mediaType: MediaTypes.OciLayerGzip,
  digest: digestOf(layer),
  size: layer.byteLength,
  ...(annotations ? { annotations } : {}),
});

const richConfig = bytesOf({
  created: '2024-01-02T03:04:05.120000000+01:00',
  author: 'A <a@example.com>',
  architecture: 'arm',
  variant: 'v7',
  os: 'linux',
  docker_version: '20.10.1',
  config: {
    Labels: {
      b: '<&>',
      a: 'é ü 日本 \u2028 \u2029',
      '10': 'ten',
      '9': 'nine',
      Z: 'upper',
      'quote"': '\\back',
    },
    Env: ['PATH=/usr/bin', 'HTML=<a href="x">&</a>'],
    ExposedPorts: { '80/tcp': {} },
    ArgsEscaped: true,
  },
  rootfs: { type: 'layers', diff_ids: [digestOf('x')] },
  history: [{ created: '2024-01-02T03:04:05Z', created_by: '/bin/sh -c #(nop) <x>' }],
  extra_field: true,
});
const minimalConfig = bytesOf({
  architecture: 'amd64',
  os: 'linux',
  config: {},
  rootfs: { type: 'layers', diff_ids: [] },
});
const emptyCollectionsConfig = bytesOf({
  architecture: 'amd64',
  os: 'linux',
  config: { Labels: {}, Env: [] },
  created: '2020-02-02T00:00:00Z',
});

describe('buildInspectOutput / formatInspectJson against skopeo inspect', () => {
  const cases: Array<[string, Uint8Array, unknown[]]> = [
    [
      'rich labels, non-ASCII, HTML characters, annotated layers',
      richConfig,
      [ociLayer({ z: '1', a: '<2>' }), ociLayer()],
    ],
    ['config without created, labels or env', minimalConfig, [ociLayer()]],
    ['empty labels and env', emptyCollectionsConfig, []],
    ['no config section, no rootfs', bytesOf({ architecture: 'amd64', os: 'linux' }), []],
    [
      'schema-less fields with odd key case',
      bytesOf({
        Architecture: 'ppc64le',
        OS: 'linux',
        Config: { labels: { k: 'v' } },
        Created: '2021-06-01T10:00:00.000000001-07:00',
      }),
      [ociLayer()],
    ],
  ];

  it.each(cases)('oci: %s', async (name, config, layers) => {
    const manifestBytes = ociImage(config, layers);
    const directory = await writeOciLayout(
      `oci-${name.replace(/\W+/g, '-')}`,
      [config, layer],
      [{ tag: 'tag', manifest: manifestBytes, mediaType: MediaTypes.OciManifest }],
    );
    const manifest = parseManifest(manifestBytes, MediaTypes.OciManifest);
    const output = buildInspectOutput({
      manifest,
      config,
      repoTags: [],
      digest: manifest.digest,
      compatibility: 'skopeo-1.9',
    });
    expect(`${formatInspectJson(output)}\n`).toBe(skopeo('inspect', `oci:${directory}:tag`));
    expect(`${formatInspectJson(buildInspectConfigOutput(manifest, config))}\n`).toBe(
      skopeo('inspect', '--config', `oci:${directory}:tag`),
    );
  });

  it('oci: an index prints the index digest and the chosen instance', async () => {
    const amd64 = ociImage(minimalConfig, [ociLayer()]);
    const arm64 = ociImage(richConfig, [ociLayer({ k: 'v' })]);
    const index = bytesOf({
      schemaVersion: 2,
      mediaType: MediaTypes.OciIndex,
      manifests: [
        {
          mediaType: MediaTypes.OciManifest,
          digest: digestOf(amd64),
          size: amd64.byteLength,
          platform: { architecture: 'amd64', os: 'linux' },
        },
        {
          mediaType: MediaTypes.OciManifest,
          digest: digestOf(arm64),
          size: arm64.byteLength,
          platform: { architecture: 'arm', os: 'linux', variant: 'v7' },
        },
      ],
    });
    const directory = await writeOciLayout(
      'oci-index',
      [minimalConfig, richConfig, layer, amd64, arm64],
      [{ tag: 'multi', manifest: index, mediaType: MediaTypes.OciIndex }],
    );
    const list = parseManifestList(index);
    for (const [architecture, variant] of [
      ['amd64', undefined],
      ['arm', 'v7'],
    ] as const) {
      const chosen = choosePlatformInstance(list, {
        os: 'linux',
        architecture,
        ...(variant ? { variant } : {}),
      });
      const manifestBytes = chosen === digestOf(amd64) ? amd64 : arm64;
      const config = chosen === digestOf(amd64) ? minimalConfig : richConfig;
      const output = buildInspectOutput({
        manifest: parseManifest(manifestBytes),
        config,
        repoTags: [],
        digest: list.digest,
        compatibility: 'skopeo-1.9',
      });
      const overrides = [
        '--override-os',
        'linux',
        '--override-arch',
        architecture,
        ...(variant ? ['--override-variant', variant] : []),
      ];
      expect(`${formatInspectJson(output)}\n`).toBe(
        skopeo(...overrides, 'inspect', `oci:${directory}:multi`),
      );
    }
  });

  it('dir: a Docker schema2 image without created prints Go zero time', async () => {
    const config = bytesOf({
      architecture: 'amd64',
      os: 'linux',
      config: { Labels: { x: '1' } },
      docker_version: '1.2',
    });
    const manifestBytes = bytesOf({
      schemaVersion: 2,
      mediaType: MediaTypes.DockerManifest,
      config: { mediaType: MediaTypes.DockerConfig, size: config.byteLength, digest: digestOf(config) },
      layers: [{ mediaType: MediaTypes.DockerLayerGzip, size: layer.byteLength, digest: digestOf(layer) }],
    });
    const directory = await writeDirImage('dir-schema2', manifestBytes, [config, layer]);
    const manifest = parseManifest(manifestBytes);
    const output = buildInspectOutput({
      manifest,
      config,
      repoTags: [],
      digest: manifest.digest,
      compatibility: 'skopeo-1.9',
    });
    expect(output.Created).toBe('0001-01-01T00:00:00Z');
    expect(`${formatInspectJson(output)}\n`).toBe(skopeo('inspect', `dir:${directory}`));
    expect(`${formatInspectJson(buildInspectConfigOutput(manifest, config))}\n`).toBe(
      skopeo('inspect', '--config', `dir:${directory}`),
    );
  });

  it('dir: a schema1 image reads its v1Compatibility', async () => {
    const manifestBytes = await readFile(path.join(import.meta.dirname, 'fixtures', 'image-schema1.json'));
    const directory = await writeDirImage('dir-schema1', manifestBytes, []);
    const manifest = parseManifest(manifestBytes);
    const output = buildInspectOutput({
      manifest,
      repoTags: [],
      digest: manifest.digest,
      compatibility: 'skopeo-1.9',
    });
    expect(`${formatInspectJson(output)}\n`).toBe(skopeo('inspect', `dir:${directory}`));
    expect(`${formatInspectJson(buildInspectConfigOutput(manifest))}\n`).toBe(
      skopeo('inspect', '--config', `dir:${directory}`),
    );
  });
});

describe('buildInspectOutput (current skopeo layout)', () => {
  const manifestOf = (config: Uint8Array, layers: unknown[]): ImageManifest =>
    parseManifest(ociImage(config, layers));

  it('orders keys as skopeo and includes Variant and LayersData', () => {
    const manifest = manifestOf(richConfig, [ociLayer({ z: '1', a: '2' }), ociLayer()]);
    const output = buildInspectOutput({
      name: 'docker.io/library/busybox',
      manifest,
      config: richConfig,
      repoTags: ['1', 'latest'],
      digest: manifest.digest,
    });
    expect(Object.keys(output)).toEqual([
      'Name',
      'Digest',
      'RepoTags',
      'Created',
      'DockerVersion',
      'Labels',
      'Architecture',
      'Variant',
      'Os',
      'Layers',
      'LayersData',
      'Env',
    ]);
    expect(output.Variant).toBe('v7');
    expect(output.Created).toBe('2024-01-02T03:04:05.12+01:00');
    const text = formatInspectJson(output);
    expect(text).toContain(
      `"LayersData": [\n        {\n            "MIMEType": "${MediaTypes.OciLayerGzip}",\n            "Digest": "${digestOf(layer)}",\n            "Size": ${layer.byteLength},\n            "Annotations": {\n                "a": "2",\n                "z": "1"\n            }\n        },`,
    );
    expect(text).toContain('"Annotations": null');
    expect(text.endsWith('}')).toBe(true);
  });

  it('omits Name and Variant when empty; nil collections are null', () => {
    const manifest = manifestOf(minimalConfig, []);
    const output = buildInspectOutput({
      manifest,
      config: minimalConfig,
      repoTags: [],
      digest: manifest.digest,
    });
    expect(output).not.toHaveProperty('Name');
    expect(output).not.toHaveProperty('Variant');
    expect(formatInspectJson(output)).toBe(
      `{\n    "Digest": "${manifest.digest}",\n    "RepoTags": [],\n    "Created": null,\n    "DockerVersion": "",\n    "Labels": null,\n    "Architecture": "amd64",\n    "Os": "linux",\n    "Layers": [],\n    "LayersData": [],\n    "Env": null\n}`,
    );
  });

  it('schema1 layers have an empty MIME type and size -1', async () => {
    const manifest = parseManifest(
      await readFile(path.join(import.meta.dirname, 'fixtures', 'image-schema1.json')),
    );
    const output = buildInspectOutput({ manifest, repoTags: [], digest: manifest.digest as Digest });
    expect(output.LayersData?.[0]).toMatchObject({
      MIMEType: '',
      Size: -1,
      Annotations: null,
    });
  });

  it('needs the config for OCI and schema2, and rejects malformed configs', () => {
    const manifest = manifestOf(minimalConfig, []);
    expect(() => buildInspectOutput({ manifest, repoTags: [], digest: manifest.digest })).toThrow(
      expect.objectContaining({ code: ErrorCodes.InvalidManifest }),
    );
    for (const config of [
      encoder.encode('not json'),
      bytesOf({ created: 'yesterday' }),
      bytesOf({ config: { Env: 'A=1' } }),
    ]) {
      expect(() => buildInspectOutput({ manifest, config, repoTags: [], digest: manifest.digest })).toThrow(
        expect.objectContaining({ code: ErrorCodes.InvalidManifest }),
      );
    }
  });
});
