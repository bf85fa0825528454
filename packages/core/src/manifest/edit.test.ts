import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Digest, digestHex, digestOf } from '../digest.js';
import { ErrorCodes } from '../errors.js';
import {
  conversionCandidates,
  editManifest,
  editManifestList,
  layerMediaTypeFor,
  needsLayerDiffIds,
} from './edit.js';
import { MediaTypes } from './media-types.js';
import { parseManifest, parseManifestList } from './parse.js';

const encoder = new TextEncoder();
const json = (value: unknown, indent?: number): Uint8Array =>
  encoder.encode(JSON.stringify(value, null, indent));
const fixtureText = (name: string): Promise<string> =>
  readFile(path.join(import.meta.dirname, 'fixtures', name), 'utf8');
const conversionError = expect.objectContaining({ code: ErrorCodes.ManifestConversionFailed });

interface Blob {
  digest: Digest;
  size: number;
  bytes: Uint8Array;
}
const blob = (content: string | Uint8Array): Blob => {
  const bytes = typeof content === 'string' ? encoder.encode(content) : content;
  return { digest: digestOf(bytes), size: bytes.byteLength, bytes };
};

let workDirectory: string;
beforeAll(async () => {
  workDirectory = await mkdtemp(path.join(os.tmpdir(), 'gantry-'));
});
afterAll(async () => {
  await rm(workDirectory, { recursive: true, force: true });
});

/** Writes a `dir:` image (containers/image directory transport) by hand. */
async function writeDirImage(
  name: string,
  manifest: Uint8Array,
  blobs: Blob[],
  instances: Uint8Array[] = [],
): Promise<string> {
  const directory = path.join(workDirectory, name);
  await import('node:fs/promises').then((fs) => fs.mkdir(directory));
  await writeFile(path.join(directory, 'version'), 'Directory Transport Version: 1.1\n');
  await writeFile(path.join(directory, 'manifest.json'), manifest);
  for (const item of blobs) await writeFile(path.join(directory, digestHex(item.digest)), item.bytes);
  for (const instance of instances)
    await writeFile(path.join(directory, `${digestHex(digestOf(instance))}.manifest.json`), instance);
  return directory;
}

/** Runs the real skopeo (fails loudly when it is missing). */
function skopeo(...args: string[]): void {
  execFileSync('skopeo', ['--insecure-policy', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

const layerGzip = blob(gzipSync(Buffer.from('layer one contents')));
const layerPlain = blob('uncompressed layer bytes');
const layerForeign = blob(gzipSync(Buffer.from('foreign layer')));

const dockerConfig = blob(
  JSON.stringify({
    architecture: 'arm64',
    variant: 'v8',
    os: 'linux',
    'os.features': ['f1'],
    created: '2024-01-02T03:04:05.500000Z',
    docker_version: '24.0.0',
    container: 'abc',
    author: 'someone <a@b.c>',
    config: {
      Hostname: 'h',
      User: 'u',
      Env: ['A=<1>&'],
      Cmd: ['sh', '-c', 'echo \u2028'],
      ArgsEscaped: true,
      Labels: { b: '2', a: 'é', '10': 'x' },
      Volumes: { '/v': {} },
      ExposedPorts: { '80/tcp': {} },
      OnBuild: null,
      WorkingDir: '',
    },
    container_config: { Cmd: ['x'] },
    rootfs: { type: 'layers', diff_ids: [digestOf('a'), digestOf('b'), digestOf('c')] },
    history: [
      { created: '2024-01-02T03:04:05Z', created_by: 'a', empty_layer: true },
      { created: '2024-01-02T04:04:05.1+02:00', author: 'me', comment: 'c' },
    ],
    unknown_field: { x: 1 },
  }),
);

describe('editManifest: Docker schema2 <-> OCI, compared with skopeo copy --format', () => {
  it('schema2 -> OCI re-encodes the config as image-spec Image and maps layer types', async () => {
    const manifestBytes = json(
      {
        schemaVersion: 2,
        mediaType: MediaTypes.DockerManifest,
        config: { mediaType: MediaTypes.DockerConfig, size: dockerConfig.size, digest: dockerConfig.digest },
        layers: [
          { mediaType: MediaTypes.DockerLayerGzip, size: layerGzip.size, digest: layerGzip.digest },
          { mediaType: MediaTypes.DockerLayer, size: layerPlain.size, digest: layerPlain.digest },
          {
            mediaType: MediaTypes.DockerLayerForeignGzip,
            size: layerForeign.size,
            digest: layerForeign.digest,
            urls: ['https://example.com/layer?a=1&b=<2>'],
          },
        ],
      },
      3,
    );
    const source = await writeDirImage('s2-src', manifestBytes, [
      dockerConfig,
      layerGzip,
      layerPlain,
      layerForeign,
    ]);
    const destination = path.join(workDirectory, 's2-to-oci');
    skopeo('copy', '-q', '--format', 'oci', `dir:${source}`, `dir:${destination}`);
    const expectedManifest = await readFile(path.join(destination, 'manifest.json'));

    const manifest = parseManifest(manifestBytes);
    const edited = editManifest(manifest, { mediaType: MediaTypes.OciManifest, config: dockerConfig.bytes });
    expect(edited.mediaType).toBe(MediaTypes.OciManifest);
    expect(Buffer.from(edited.bytes).toString()).toBe(expectedManifest.toString());
    expect(edited.digest).toBe(digestOf(expectedManifest));
    const configDigest = JSON.parse(expectedManifest.toString()).config.digest as Digest;
    const expectedConfig = await readFile(path.join(destination, digestHex(configDigest)));
    expect(Buffer.from(edited.config!.bytes).toString()).toBe(expectedConfig.toString());
    expect(edited.config!.info).toEqual({
      digest: configDigest,
      size: expectedConfig.byteLength,
      mediaType: MediaTypes.OciConfig,
    });

    expect(() => editManifest(manifest, { mediaType: MediaTypes.OciManifest })).toThrow(conversionError);
  });

  const ociConfig = blob(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
  );
  const ociManifestValue = {
    schemaVersion: 2,
    mediaType: MediaTypes.OciManifest,
    config: {
      mediaType: MediaTypes.OciConfig,
      digest: ociConfig.digest,
      size: ociConfig.size,
      annotations: { c: '1' },
    },
    layers: [
      {
        mediaType: MediaTypes.OciLayerGzip,
        digest: layerGzip.digest,
        size: layerGzip.size,
        annotations: { z: '1', a: '<2>' },
      },
      { mediaType: MediaTypes.OciLayer, digest: layerPlain.digest, size: layerPlain.size },
      {
        mediaType: MediaTypes.OciLayerNondistributableGzip,
        digest: layerForeign.digest,
        size: layerForeign.size,
        urls: ['https://example.com/f'],
      },
    ],
    annotations: { 'org.example.b': 'b', 'org.example.a': 'a&' },
  };

  it('OCI -> schema2 keeps the config blob and drops OCI-only fields', async () => {
    const manifestBytes = json(ociManifestValue, 2);
    const source = await writeDirImage('oci-src', manifestBytes, [
      ociConfig,
      layerGzip,
      layerPlain,
      layerForeign,
    ]);
    const destination = path.join(workDirectory, 'oci-to-s2');
    skopeo('copy', '-q', '--format', 'v2s2', `dir:${source}`, `dir:${destination}`);
    const expected = await readFile(path.join(destination, 'manifest.json'));
    const edited = editManifest(parseManifest(manifestBytes), { mediaType: MediaTypes.DockerManifest });
    expect(Buffer.from(edited.bytes).toString()).toBe(expected.toString());
    expect(edited.mediaType).toBe(MediaTypes.DockerManifest);
    expect(edited.config).toBeUndefined();
  });

  it('OCI layer edits (decompression) re-serialise like skopeo --dest-decompress', async () => {
    const manifestBytes = json(ociManifestValue, 2);
    const source = await writeDirImage('oci-src-decompress', manifestBytes, [
      ociConfig,
      layerGzip,
      layerPlain,
      layerForeign,
    ]);
    const destination = path.join(workDirectory, 'oci-decompressed');
    skopeo('copy', '-q', '--dest-decompress', `dir:${source}`, `dir:${destination}`);
    const expected = await readFile(path.join(destination, 'manifest.json'));
    const decompressed = blob(new Uint8Array(Buffer.from('layer one contents')));
    const foreignDecompressed = blob(new Uint8Array(Buffer.from('foreign layer')));
    const edited = editManifest(parseManifest(manifestBytes), {
      layers: [
        { digest: decompressed.digest, size: decompressed.size, compression: 'none' },
        { digest: layerPlain.digest, size: layerPlain.size, compression: 'none' },
        { digest: foreignDecompressed.digest, size: foreignDecompressed.size, compression: 'none' },
      ],
    });
    expect(Buffer.from(edited.bytes).toString()).toBe(expected.toString());
  });

  it('layer edits drop annotations of changed blobs and URLs unless given, as skopeo', () => {
    const manifest = parseManifest(json(ociManifestValue));
    const edited = editManifest(manifest, {
      layers: [
        { digest: layerPlain.digest, size: layerPlain.size, compression: 'none' },
        { digest: layerPlain.digest, size: layerPlain.size, compression: 'none', annotations: { n: '1' } },
        {
          digest: layerForeign.digest,
          size: layerForeign.size,
          compression: 'gzip',
          urls: ['https://example.com/kept'],
        },
      ],
    });
    expect(
      parseManifest(edited.bytes).layers.map(({ annotations, urls }) => ({ annotations, urls })),
    ).toEqual([
      { annotations: undefined, urls: undefined },
      { annotations: { n: '1' }, urls: undefined },
      { annotations: undefined, urls: ['https://example.com/kept'] },
    ]);
  });

  it('returns the original bytes when nothing changes', () => {
    const manifestBytes = json(ociManifestValue, 2);
    const manifest = parseManifest(manifestBytes);
    const edited = editManifest(manifest, {
      mediaType: MediaTypes.OciManifest,
      layers: manifest.layers.map((layer) => ({
        digest: layer.digest,
        size: layer.size,
        compression: layer.compression as 'gzip',
        mediaType: layer.mediaType!,
      })),
    });
    expect(edited.bytes).toBe(manifestBytes);
    expect(edited.digest).toBe(manifest.digest);
  });

  it('a conversion with unchanged layer digests keeps URLs (skopeo sets no layer edits then)', () => {
    const manifest = parseManifest(json(ociManifestValue));
    const edited = editManifest(manifest, {
      mediaType: MediaTypes.DockerManifest,
      layers: manifest.layers.map((layer) => ({
        digest: layer.digest,
        size: layer.size,
        compression: layer.compression as 'gzip',
        mediaType: layerMediaTypeFor(MediaTypes.DockerManifest, layer.compression as 'gzip', layer.mediaType),
      })),
    });
    expect(parseManifest(edited.bytes).layers[2]!.urls).toEqual(['https://example.com/f']);
  });

  const ociWith = (layers: unknown[], configMediaType: string = MediaTypes.OciConfig) =>
    parseManifest(
      json({
        schemaVersion: 2,
        config: { mediaType: configMediaType, digest: ociConfig.digest, size: ociConfig.size },
        layers,
      }),
    );
  const layerOf = (mediaType: string) => ({ mediaType, digest: layerGzip.digest, size: layerGzip.size });

  it.each([
    [
      'a zstd layer',
      ociWith([layerOf(MediaTypes.OciLayerZstd)]),
      /zstd compression is not supported for docker images/,
    ],
    ['a non-distributable zstd layer', ociWith([layerOf(MediaTypes.OciLayerNondistributableZstd)]), /zstd/],
    [
      'an encrypted layer',
      ociWith([layerOf('application/vnd.oci.image.layer.v1.tar+gzip+encrypted')]),
      /encrypted layers/,
    ],
    [
      'an unknown layer type',
      ociWith([layerOf('application/x-custom')]),
      /Unknown media type during manifest conversion/,
    ],
    ['an artifact', ociWith([], 'application/vnd.example.artifact+json'), /OCI artifact/],
  ])('OCI -> schema2 rejects %s', (_name, manifest, message) => {
    expect(() => editManifest(manifest, { mediaType: MediaTypes.DockerManifest })).toThrow(conversionError);
    expect(() => editManifest(manifest, { mediaType: MediaTypes.DockerManifest })).toThrow(message);
  });

  it('OCI zstd layers convert to schema2 when the edit recompresses them with gzip', () => {
    const manifest = ociWith([layerOf(MediaTypes.OciLayerZstd)]);
    const edited = editManifest(manifest, {
      mediaType: MediaTypes.DockerManifest,
      layers: [{ digest: layerForeign.digest, size: layerForeign.size, compression: 'gzip' }],
    });
    expect(JSON.parse(Buffer.from(edited.bytes).toString()).layers).toEqual([
      { mediaType: MediaTypes.DockerLayerGzip, size: layerForeign.size, digest: layerForeign.digest },
    ]);
  });

  it('layer edits: media types follow the compression; explicit media types win; count must match', () => {
    const manifest = ociWith([
      layerOf(MediaTypes.OciLayer),
      layerOf(MediaTypes.OciLayerNondistributable),
      layerOf('application/x-custom'),
    ]);
    const edited = editManifest(manifest, {
      layers: [
        { digest: layerForeign.digest, size: 5, compression: 'zstd' },
        { digest: layerForeign.digest, size: 6, compression: 'gzip' },
        { digest: layerForeign.digest, size: 7, compression: 'gzip' },
      ],
    });
    expect(
      JSON.parse(Buffer.from(edited.bytes).toString()).layers.map(
        (layer: { mediaType: string }) => layer.mediaType,
      ),
    ).toEqual([MediaTypes.OciLayerZstd, MediaTypes.OciLayerNondistributableGzip, 'application/x-custom']);
    const explicit = editManifest(manifest, {
      layers: manifest.layers.map(() => ({
        digest: layerPlain.digest,
        size: layerPlain.size,
        compression: 'none',
        mediaType: 'application/x-other',
      })),
    });
    expect(
      parseManifest(explicit.bytes).layers.every((layer) => layer.mediaType === 'application/x-other'),
    ).toBe(true);
    expect(() => editManifest(manifest, { layers: [] })).toThrow(/layer count changed from 3 to 0/);
    const schema2 = editManifest(ociWith([layerOf(MediaTypes.OciLayerGzip)]), {
      mediaType: MediaTypes.DockerManifest,
    });
    expect(() =>
      editManifest(parseManifest(schema2.bytes), {
        layers: [{ digest: layerPlain.digest, size: 1, compression: 'zstd' }],
      }),
    ).toThrow(conversionError);
  });

  it('conversions to schema1 are not supported yet', () => {
    const manifest = ociWith([layerOf(MediaTypes.OciLayerGzip)]);
    for (const target of [
      MediaTypes.DockerSchema1,
      MediaTypes.DockerSchema1Signed,
      'application/x-unknown',
    ]) {
      expect(() => editManifest(manifest, { mediaType: target })).toThrow(conversionError);
    }
  });
});

describe('editManifest: schema1 -> schema2 / OCI, compared with skopeo copy --format', () => {
  it.each([
    ['v2s2', MediaTypes.DockerManifest],
    ['oci', MediaTypes.OciManifest],
  ])('--format %s', async (format, target) => {
    const contents = [Buffer.from('top layer'), Buffer.alloc(1024), Buffer.from('base layer')];
    const blobs = contents.map((content) => blob(gzipSync(content)));
    const id = (n: number) => String(n).repeat(64);
    const manifestBytes = json(
      {
        schemaVersion: 1,
        name: 'library/x',
        tag: 'latest',
        architecture: 'amd64',
        fsLayers: blobs.map((item) => ({ blobSum: item.digest })),
        history: [
          {
            v1Compatibility: JSON.stringify({
              id: id(3),
              parent: id(2),
              created: '2020-01-01T00:00:00.100Z',
              container: 'c',
              container_config: { Cmd: ['/bin/sh', '-c', 'echo <&>'] },
              config: { Env: ['A=<1>'], Labels: { z: '1', a: 'é\u2028' } },
              docker_version: '18.09.7',
              architecture: 'amd64',
              os: 'linux',
              Size: 123,
            }),
          },
          {
            v1Compatibility: JSON.stringify({
              id: id(2),
              parent: id(1),
              created: '2020-01-01T00:00:00+02:00',
              container_config: { Cmd: ['/bin/sh', '-c', '#(nop) ENV A=1'] },
              throwaway: true,
            }),
          },
          {
            v1Compatibility: JSON.stringify({
              id: id(1),
              created: '2019-12-31T23:59:59.999999999Z',
              author: 'me',
              comment: 'base',
            }),
          },
        ],
      },
      3,
    );
    const source = await writeDirImage(`schema1-src-${format}`, manifestBytes, blobs);
    const destination = path.join(workDirectory, `schema1-to-${format}`);
    skopeo('copy', '-q', '--format', format, `dir:${source}`, `dir:${destination}`);
    const expected = await readFile(path.join(destination, 'manifest.json'));

    const manifest = parseManifest(manifestBytes);
    const baseFirst = [...blobs].reverse();
    const edited = editManifest(manifest, {
      mediaType: target,
      layers: baseFirst.map((item) => ({ digest: item.digest, size: item.size, compression: 'gzip' })),
      layerDiffIds: [...contents].reverse().map((content) => digestOf(content)),
    });
    expect(Buffer.from(edited.bytes).toString()).toBe(expected.toString());
    const configDigest = JSON.parse(expected.toString()).config.digest as Digest;
    const expectedConfig = await readFile(path.join(destination, digestHex(configDigest)));
    expect(Buffer.from(edited.config!.bytes).toString()).toBe(expectedConfig.toString());
  });
});

describe('editManifest: schema1 -> schema2 / OCI (containers/image fixtures)', () => {
  // Layer infos and diff IDs of containers/image internal/image/docker_schema1_test.go, for fixtures/image-schema1.json.
  const layers = [
    ['sha256:9cadd93b16ff2a0c51ac967ea2abfadfac50cfa3af8b5bf983d89b8f8647f3e4', 74876245],
    ['sha256:4aa565ad8b7a87248163ce7dba1dd3894821aac97e846b932ff6b8ef9a8a508a', 1239],
    ['sha256:f576d102e09b9eef0e305aaef705d2d43a11bebc3fd5810a761624bd5e11997e', 78339724],
    ['sha256:9e92df2aea7dc0baf5f1f8d509678d6a6306de27ad06513f8e218371938c07a6', 76857203],
    ['sha256:62e48e39dc5b30b75a97f05bccc66efbae6058b860ee20a5c9a184b9d5e25788', 25923380],
    ['sha256:e623934bca8d1a74f51014256445937714481e49343a31bda2bc5f534748184d', 23511300],
  ] as const;
  const diffIds = [
    'sha256:e1d829eddb62dc49f1c56dbf8acd0c71299b3996115399de853a9d66d81b822f',
    'sha256:02404b4d7e5d89b1383ca346b4462b199128aa4b238c5a2b2c186004ac148ba8',
    'sha256:45fad80a4b1cec165c421eb570dec312d825bd8fac362e255028fa3f2169148d',
    'sha256:7ddef8efd44586e54880ec4797458eac87b368544c438d7e7c63fbc0d9a7ae97',
    'sha256:b56b16b6407ba1b86252e7e50f98f142cf6844fab42e4495d56ebb7ce559e2af',
    'sha256:9bd63850e406167b4751f5050f6dc0ebd789bb5ef5e5c6c31ed062bda8c063e8',
  ];
  const layerEdits = layers.map(([digest, size]) => ({ digest, size, compression: 'gzip' as const }));

  it('needsLayerDiffIds only for schema1 -> schema2/OCI', async () => {
    const schema1 = parseManifest(encoder.encode(await fixtureText('image-schema1.json')));
    expect(needsLayerDiffIds(schema1, MediaTypes.DockerManifest)).toBe(true);
    expect(needsLayerDiffIds(schema1, MediaTypes.OciManifest)).toBe(true);
    expect(needsLayerDiffIds(schema1, MediaTypes.DockerSchema1Signed)).toBe(false);
    const schema2 = parseManifest(encoder.encode(await fixtureText('image-schema2.json')));
    expect(needsLayerDiffIds(schema2, MediaTypes.OciManifest)).toBe(false);
  });

  it.each([
    [MediaTypes.DockerManifest, 'image-schema1-to-schema2.json', 'image-schema1-to-schema2-config.json'],
    [MediaTypes.OciManifest, 'image-schema1-to-oci1.json', 'image-schema1-to-oci1-config.json'],
  ])('to %s matches %s', async (target, manifestFixture, configFixture) => {
    const schema1 = parseManifest(encoder.encode(await fixtureText('image-schema1.json')));
    expect(schema1.layers).toHaveLength(layers.length);
    const edited = editManifest(schema1, {
      mediaType: target,
      layers: layerEdits,
      layerDiffIds: diffIds as Digest[],
    });
    expect(edited.mediaType).toBe(target);
    const converted = JSON.parse(Buffer.from(edited.bytes).toString());
    const expected = JSON.parse(await fixtureText(manifestFixture));
    expect({ ...converted, config: undefined }).toEqual({ ...expected, config: undefined });
    expect(JSON.parse(Buffer.from(edited.config!.bytes).toString())).toEqual(
      JSON.parse(await fixtureText(configFixture)),
    );
    expect(converted.config).toEqual({
      mediaType: target === MediaTypes.OciManifest ? MediaTypes.OciConfig : MediaTypes.DockerConfig,
      size: edited.config!.bytes.byteLength,
      digest: digestOf(edited.config!.bytes),
    });
    // Go's json.Marshal output: compact, top-level keys sorted for the schema2 config (a Go map).
    const configText = Buffer.from(edited.config!.bytes).toString();
    expect(configText).not.toMatch(/\n/);
    if (target === MediaTypes.DockerManifest) {
      const keys = Object.keys(JSON.parse(configText));
      expect(keys).toEqual([...keys].sort());
      expect(configText).toContain('"rootfs":{"type":"layers","diff_ids":[');
    }
  });

  it('drops throwaway layers and applies the layer edits of the others', () => {
    const id = (n: number) => String(n).repeat(64);
    const bytes = json({
      schemaVersion: 1,
      name: 'x',
      tag: 'latest',
      architecture: 'amd64',
      fsLayers: [{ blobSum: digestOf('top') }, { blobSum: digestOf('empty') }, { blobSum: digestOf('base') }],
      history: [
        {
          v1Compatibility: JSON.stringify({
            id: id(3),
            parent: id(2),
            created: '2020-01-01T00:00:00.10Z',
            os: 'linux',
            config: { Env: ['A=1'] },
          }),
        },
        {
          v1Compatibility: JSON.stringify({
            id: id(2),
            parent: id(1),
            throwaway: true,
            container_config: { Cmd: ['/bin/sh', '-c', '#(nop) ENV A=1'] },
          }),
        },
        {
          v1Compatibility: JSON.stringify({
            id: id(1),
            created: '2020-01-01T00:00:00Z',
            author: 'me',
            comment: 'base',
          }),
        },
      ],
    });
    const manifest = parseManifest(bytes);
    expect(manifest.layers.map((layer) => layer.emptyLayer)).toEqual([false, true, false]);
    const edited = editManifest(manifest, {
      mediaType: MediaTypes.DockerManifest,
      layers: [
        { digest: digestOf('base2'), size: 10, compression: 'none' },
        { digest: digestOf('empty'), size: 32, compression: 'gzip' },
        { digest: digestOf('top2'), size: 20, compression: 'gzip' },
      ],
      layerDiffIds: [digestOf('d-base'), digestOf('d-empty'), digestOf('d-top')],
    });
    expect(JSON.parse(Buffer.from(edited.bytes).toString()).layers).toEqual([
      { mediaType: MediaTypes.DockerLayer, size: 10, digest: digestOf('base2') },
      { mediaType: MediaTypes.DockerLayerGzip, size: 20, digest: digestOf('top2') },
    ]);
    expect(Buffer.from(edited.config!.bytes).toString()).toBe(
      `{"config":{"Env":["A=1"]},"created":"2020-01-01T00:00:00.10Z","history":[` +
        `{"created":"2020-01-01T00:00:00Z","author":"me","comment":"base"},` +
        `{"created":"0001-01-01T00:00:00Z","created_by":"/bin/sh -c #(nop) ENV A=1","empty_layer":true},` +
        `{"created":"2020-01-01T00:00:00.1Z"}],"os":"linux",` +
        `"rootfs":{"type":"layers","diff_ids":["${digestOf('d-base')}","${digestOf('d-top')}"]}}`,
    );
    expect(() => editManifest(manifest, { mediaType: MediaTypes.DockerManifest, layers: [] })).toThrow(
      conversionError,
    );
    expect(() =>
      editManifest(manifest, {
        mediaType: MediaTypes.OciManifest,
        layers: manifest.layers.map(() => ({ digest: digestOf('x'), size: 1, compression: 'gzip' })),
      }),
    ).toThrow(/uncompressed digests/);
    expect(() =>
      editManifest(manifest, {
        layers: [
          { digest: digestOf('x'), size: 1, compression: 'gzip' },
          ...manifest.layers
            .slice(1)
            .map((layer) => ({ digest: layer.digest, size: 1, compression: 'gzip' as const })),
        ],
      }),
    ).toThrow(/schema1/);
    expect(editManifest(manifest, {}).bytes).toBe(bytes);
  });
});

describe('editManifestList', () => {
  it('converts an OCI index to a Docker list like skopeo copy --all --format v2s2', async () => {
    const config = blob(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
    );
    const instance = json({
      schemaVersion: 2,
      mediaType: MediaTypes.OciManifest,
      config: { mediaType: MediaTypes.OciConfig, digest: config.digest, size: config.size },
      layers: [{ mediaType: MediaTypes.OciLayerGzip, digest: layerGzip.digest, size: layerGzip.size }],
    });
    const instanceDigest = digestOf(instance);
    const indexBytes = json(
      {
        schemaVersion: 2,
        manifests: [
          {
            mediaType: MediaTypes.OciManifest,
            digest: instanceDigest,
            size: instance.byteLength,
            platform: { architecture: 'arm', os: 'linux', variant: 'v7', 'os.features': ['x'] },
            annotations: { a: '<' },
          },
          { mediaType: MediaTypes.OciManifest, digest: instanceDigest, size: instance.byteLength },
        ],
        annotations: { k: 'v' },
      },
      2,
    );
    const source = await writeDirImage('index-src', indexBytes, [config, layerGzip], [instance]);
    const unchanged = path.join(workDirectory, 'index-unchanged');
    skopeo('copy', '-q', '--all', `dir:${source}`, `dir:${unchanged}`);
    const list = parseManifestList(indexBytes);
    const same = editManifestList(list, {
      instances: new Map([
        [
          instanceDigest,
          { digest: instanceDigest, size: instance.byteLength, mediaType: MediaTypes.OciManifest },
        ],
      ]),
    });
    expect(Buffer.from(same.bytes).equals(await readFile(path.join(unchanged, 'manifest.json')))).toBe(true);

    const converted = path.join(workDirectory, 'index-to-list');
    skopeo('copy', '-q', '--all', '--format', 'v2s2', `dir:${source}`, `dir:${converted}`);
    const expected = await readFile(path.join(converted, 'manifest.json'));
    const instanceEdit = editManifest(parseManifest(instance), { mediaType: MediaTypes.DockerManifest });
    const edited = editManifestList(list, {
      mediaType: MediaTypes.DockerManifestList,
      instances: new Map([
        [
          instanceDigest,
          {
            digest: instanceEdit.digest,
            size: instanceEdit.bytes.byteLength,
            mediaType: instanceEdit.mediaType,
          },
        ],
      ]),
    });
    // skopeo gives a platform-less OCI instance the host's os/architecture, as we do.
    expect(Buffer.from(edited.bytes).toString()).toBe(expected.toString());
    expect(edited.digest).toBe(digestOf(expected));
  });

  it('converts a Docker list to an OCI index, and keeps only some instances', () => {
    const digest = (character: string) => `sha256:${character.repeat(64)}`;
    const list = parseManifestList(
      json({
        schemaVersion: 2,
        mediaType: MediaTypes.DockerManifestList,
        manifests: [
          {
            mediaType: MediaTypes.DockerManifest,
            size: 1,
            digest: digest('a'),
            platform: { architecture: 'amd64', os: 'linux', features: ['sse4'] },
          },
          {
            mediaType: MediaTypes.DockerManifest,
            size: 2,
            digest: digest('b'),
            platform: { architecture: 'arm64', os: 'linux', variant: 'v8' },
          },
        ],
      }),
    );
    const oci = editManifestList(list, {
      mediaType: MediaTypes.OciIndex,
      instances: new Map([
        [digest('b'), { digest: digest('c'), size: 3, mediaType: MediaTypes.OciManifest }],
      ]),
    });
    expect(Buffer.from(oci.bytes).toString()).toBe(
      `{"schemaVersion":2,"mediaType":"${MediaTypes.OciIndex}","manifests":[` +
        `{"mediaType":"${MediaTypes.DockerManifest}","digest":"${digest('a')}","size":1,"platform":{"architecture":"amd64","os":"linux"}},` +
        `{"mediaType":"${MediaTypes.OciManifest}","digest":"${digest('c')}","size":3,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}`,
    );
    const kept = editManifestList(list, { keepOnly: [digest('b')] });
    expect(parseManifestList(kept.bytes).instances.map((instance) => instance.digest)).toEqual([digest('b')]);
    expect(Buffer.from(kept.bytes).toString()).toContain('"size":2,"digest"');
    const keptAll = editManifestList(list, { keepOnly: [digest('a'), digest('b')] });
    expect(keptAll.bytes).toBe(list.bytes);
    expect(() => editManifestList(list, { mediaType: MediaTypes.OciManifest })).toThrow(conversionError);
  });
});

describe('conversionCandidates', () => {
  const {
    OciManifest: oci,
    DockerManifest: s2,
    DockerSchema1Signed: s1s,
    DockerSchema1: s1,
    OciIndex: index,
    DockerManifestList: list,
  } = MediaTypes;
  it.each([
    ['any destination keeps OCI first', oci, undefined, undefined, [oci, s2, s1s, s1]],
    ['any destination keeps schema2 first', s2, [], undefined, [s2, s1s, oci, s1]],
    ['schema1 source, OCI-only destination', s1s, [oci], undefined, [oci]],
    [
      'unknown source type normalises to schema1 signed',
      'text/plain',
      [oci, s2, s1s],
      undefined,
      [s1s, s2, oci],
    ],
    ['OCI source, Docker destination', oci, [s2, s1s, s1], undefined, [s2, s1s, s1]],
    ['source supported is kept first', oci, [s2, oci], undefined, [oci, s2]],
    ['list types are no target for a single image', s2, [oci, index], undefined, [oci]],
    ['forced type only', oci, [oci, s2], s2, [s2]],
    ['forced type only even if unsupported', s2, [s2], oci, [oci]],
    ['list kept', index, undefined, undefined, [index, list]],
    ['list converted', index, [s2, list], undefined, [list]],
    ['list with forced single type', list, undefined, oci, [index]],
    ['list with forced schema2', index, undefined, s2, [list]],
  ])('%s', (_name, source, supported, forced, expected) => {
    expect(conversionCandidates(source, supported, forced)).toEqual(expected);
  });

  it('fails when no list type is supported for a list', () => {
    expect(() => conversionCandidates(index, [oci, s2])).toThrow(conversionError);
  });
});

describe('layerMediaTypeFor', () => {
  const { OciManifest: oci, DockerManifest: s2 } = MediaTypes;
  it.each([
    [oci, 'gzip', undefined, MediaTypes.OciLayerGzip],
    [oci, 'zstd', MediaTypes.DockerLayerGzip, MediaTypes.OciLayerZstd],
    [oci, 'none', MediaTypes.OciLayerGzip, MediaTypes.OciLayer],
    [oci, 'gzip', MediaTypes.DockerLayerForeign, MediaTypes.OciLayerNondistributableGzip],
    [oci, 'zstd', MediaTypes.OciLayerNondistributable, MediaTypes.OciLayerNondistributableZstd],
    [oci, 'none', MediaTypes.OciLayerNondistributableGzip, MediaTypes.OciLayerNondistributable],
    [s2, 'gzip', MediaTypes.OciLayer, MediaTypes.DockerLayerGzip],
    [s2, 'none', undefined, MediaTypes.DockerLayer],
    [s2, 'gzip', MediaTypes.OciLayerNondistributable, MediaTypes.DockerLayerForeignGzip],
    [s2, 'none', MediaTypes.DockerLayerForeignGzip, MediaTypes.DockerLayerForeign],
    [MediaTypes.DockerSchema1Signed, 'gzip', undefined, ''],
  ] as const)('%s %s (from %s) -> %s', (manifestType, compression, original, expected) => {
    expect(layerMediaTypeFor(manifestType, compression, original)).toBe(expected);
  });

  it.each([
    [s2, 'zstd', undefined],
    [MediaTypes.DockerSchema1, 'zstd', undefined],
    [oci, 'gzip', 'application/vnd.oci.image.layer.v1.tar+gzip+encrypted'],
    [MediaTypes.OciIndex, 'gzip', undefined],
  ] as const)('rejects %s %s (from %s)', (manifestType, compression, original) => {
    expect(() => layerMediaTypeFor(manifestType, compression, original)).toThrow(conversionError);
  });
});
