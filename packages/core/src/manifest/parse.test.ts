import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.js';
import { MediaTypes } from './media-types.js';
import {
  jsonNestingExceeds,
  layerCompressionOf,
  maximumJsonNestingDepth,
  parseManifest,
  parseManifestList,
} from './parse.js';

const fixture = (name: string): Uint8Array => readFileSync(path.join(import.meta.dirname, 'fixtures', name));
const json = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));
const digestA = `sha256:${'a'.repeat(64)}`;
const digestB = `sha256:${'b'.repeat(64)}`;
const ociConfig = { mediaType: MediaTypes.OciConfig, digest: digestA, size: 10 };
const ociLayer = { mediaType: MediaTypes.OciLayerGzip, digest: digestB, size: 20 };

describe('parseManifest', () => {
  it('parses an OCI manifest with annotations', () => {
    const manifest = parseManifest(fixture('ociv1.manifest.json'));
    expect(manifest.mediaType).toBe(MediaTypes.OciManifest);
    expect(manifest.config).toEqual({
      mediaType: MediaTypes.OciConfig,
      digest: 'sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7',
      size: 7023,
    });
    expect(manifest.layers).toHaveLength(3);
    expect(manifest.layers[0]).toMatchObject({
      mediaType: MediaTypes.OciLayerGzip,
      compression: 'gzip',
      emptyLayer: false,
      size: 32654,
    });
    expect(manifest.annotations).toEqual({ 'com.example.key1': 'value1', 'com.example.key2': 'value2' });
  });

  it('parses a Docker schema2 manifest and computes its digest', () => {
    const manifest = parseManifest(fixture('v2s2.manifest.json'), MediaTypes.DockerManifest);
    expect(manifest.mediaType).toBe(MediaTypes.DockerManifest);
    expect(manifest.digest).toBe('sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55');
    expect(manifest.config?.mediaType).toBe(MediaTypes.DockerConfig);
    expect(manifest.layers.map((layer) => layer.compression)).toEqual(['gzip', 'gzip', 'gzip']);
  });

  it('parses signed and unsigned schema1: layers reversed, throwaway layers flagged', () => {
    const signed = parseManifest(fixture('v2s1.manifest.json'));
    expect(signed.mediaType).toBe(MediaTypes.DockerSchema1Signed);
    expect(signed.digest).toBe('sha256:7364fea9d84ee548ab67d4c46c6006289800c98de3fbf8c0a97138dfcc23f000');
    expect(signed.config).toBeUndefined();
    const unsigned = parseManifest(fixture('v2s1-unsigned.manifest.json'), 'text/plain');
    expect(unsigned.mediaType).toBe(MediaTypes.DockerSchema1);
    const withThrowaways = parseManifest(fixture('image-schema1.json'));
    const decoded = JSON.parse(
      readFileSync(path.join(import.meta.dirname, 'fixtures', 'image-schema1.json'), 'utf8'),
    );
    const reversedSums = decoded.fsLayers.map((layer: { blobSum: string }) => layer.blobSum).reverse();
    expect(withThrowaways.layers.map((layer) => layer.digest)).toEqual(reversedSums);
    expect(withThrowaways.layers.every((layer) => layer.size === -1 && layer.compression === 'unknown')).toBe(
      true,
    );
    const throwaways = decoded.history
      .map((entry: { v1Compatibility: string }) => JSON.parse(entry.v1Compatibility).throwaway === true)
      .reverse();
    expect(withThrowaways.layers.map((layer) => layer.emptyLayer)).toEqual(throwaways);
  });

  it('removes consecutive repeated schema1 IDs like containers/image', () => {
    const id1 = '1'.repeat(64);
    const id2 = '2'.repeat(64);
    const manifest = parseManifest(
      json({
        schemaVersion: 1,
        fsLayers: [{ blobSum: digestA }, { blobSum: digestA }, { blobSum: digestB }],
        history: [
          { v1Compatibility: JSON.stringify({ id: id2, parent: id1 }) },
          { v1Compatibility: JSON.stringify({ id: id2, parent: id1 }) },
          { v1Compatibility: JSON.stringify({ id: id1, throwaway: true }) },
        ],
      }),
    );
    expect(manifest.layers).toEqual([
      { digest: digestB, size: -1, compression: 'unknown', emptyLayer: true },
      { digest: digestA, size: -1, compression: 'unknown', emptyLayer: false },
    ]);
  });

  const oci = (overrides: Record<string, unknown>) =>
    json({ schemaVersion: 2, config: ociConfig, layers: [ociLayer], ...overrides });
  const history = (entries: unknown[]) =>
    entries.map((entry) => ({ v1Compatibility: JSON.stringify(entry) }));
  const id1 = '1'.repeat(64);
  it.each([
    ['not JSON', new TextEncoder().encode('{'), undefined, /cannot determine|not valid JSON/],
    ['unknown schema version', fixture('unknown-version.manifest.json'), undefined, /cannot determine/],
    [
      'OCI with a disagreeing mediaType',
      oci({ mediaType: MediaTypes.DockerManifest }),
      MediaTypes.OciManifest,
      /mediaType .* does not match/,
    ],
    ['OCI without config', oci({ config: undefined }), MediaTypes.OciManifest, /missing config/],
    ['OCI without layers', oci({ layers: undefined }), MediaTypes.OciManifest, /missing layers/],
    [
      'OCI with manifests',
      oci({ manifests: [] }),
      MediaTypes.OciManifest,
      /ambiguous manifest, unexpected fields \["manifests"\]/,
    ],
    [
      'OCI with an invalid digest',
      oci({ layers: [{ ...ociLayer, digest: 'sha256:abc' }] }),
      undefined,
      /layer 0: invalid digest/,
    ],
    [
      'OCI with a missing digest',
      oci({ config: { mediaType: MediaTypes.OciConfig, size: 1 } }),
      undefined,
      /config: missing digest/,
    ],
    ['OCI with a negative size', oci({ layers: [{ ...ociLayer, size: -5 }] }), undefined, /invalid size -5/],
    [
      'OCI with a layer without mediaType',
      oci({ layers: [{ digest: digestB, size: 1 }] }),
      undefined,
      /missing mediaType/,
    ],
    ['OCI with bad annotations', oci({ annotations: { a: 1 } }), undefined, /annotations/],
    [
      'OCI with schemaVersion 1 given as OCI',
      oci({ schemaVersion: 1 }),
      MediaTypes.OciManifest,
      /unsupported schema version 1/,
    ],
    [
      'schema2 without mediaType',
      json({ schemaVersion: 2, config: { ...ociConfig, mediaType: MediaTypes.DockerConfig }, layers: [] }),
      MediaTypes.DockerManifest,
      /missing mediaType/,
    ],
    [
      'schema2 with an OCI layer',
      json({
        schemaVersion: 2,
        mediaType: MediaTypes.DockerManifest,
        config: { ...ociConfig, mediaType: MediaTypes.DockerConfig },
        layers: [ociLayer],
      }),
      undefined,
      /unsupported docker v2s2 media type/,
    ],
    [
      'schema1 with config',
      json({
        schemaVersion: 1,
        config: ociConfig,
        fsLayers: [{ blobSum: digestA }],
        history: history([{ id: id1 }]),
      }),
      undefined,
      /unexpected fields \["config"\]/,
    ],
    [
      'schema1 without layers',
      json({ schemaVersion: 1, fsLayers: [], history: [] }),
      undefined,
      /no FSLayers/,
    ],
    [
      'schema1 with mismatched history',
      json({ schemaVersion: 1, fsLayers: [{ blobSum: digestA }], history: [] }),
      undefined,
      /length of history/,
    ],
    [
      'schema1 with a bad v1 ID',
      json({ schemaVersion: 1, fsLayers: [{ blobSum: digestA }], history: history([{ id: 'x' }]) }),
      undefined,
      /image ID "x" is invalid/,
    ],
    [
      'schema1 with a base parent',
      json({
        schemaVersion: 1,
        fsLayers: [{ blobSum: digestA }],
        history: history([{ id: id1, parent: id1 }]),
      }),
      undefined,
      /Invalid parent ID in the base layer/,
    ],
    [
      'schema1 with broken parents',
      json({
        schemaVersion: 1,
        fsLayers: [{ blobSum: digestA }, { blobSum: digestA }],
        history: history([{ id: '2'.repeat(64), parent: '3'.repeat(64) }, { id: id1 }]),
      }),
      undefined,
      /Invalid parent ID. Expected/,
    ],
    [
      'schema1 with bad v1Compatibility',
      json({ schemaVersion: 1, fsLayers: [{ blobSum: digestA }], history: [{ v1Compatibility: '{' }] }),
      undefined,
      /history entry 0/,
    ],
  ])('rejects %s', (_name, bytes, mediaType, message) => {
    let caught: unknown;
    try {
      parseManifest(bytes, mediaType);
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: ErrorCodes.InvalidManifest });
    expect((caught as Error).message).toMatch(message);
  });

  it('refuses lists with ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE', () => {
    expect(() => parseManifest(fixture('v2list.manifest.json'))).toThrow(
      expect.objectContaining({ code: ErrorCodes.UnsupportedManifestType }),
    );
  });
});

describe('parseManifestList', () => {
  it('parses a Docker manifest list with platforms', () => {
    const list = parseManifestList(fixture('v2list.manifest.json'));
    expect(list.mediaType).toBe(MediaTypes.DockerManifestList);
    expect(list.instances.length).toBeGreaterThan(1);
    expect(list.instances[0]!.platform).toMatchObject({ architecture: expect.any(String), os: 'linux' });
  });

  it('parses an OCI index, with and without mediaType', () => {
    for (const name of ['ociv1.image.index.json', 'ociv1nomime.image.index.json']) {
      const list = parseManifestList(fixture(name));
      expect(list.mediaType).toBe(MediaTypes.OciIndex);
      expect(list.instances[0]).toMatchObject({
        mediaType: MediaTypes.OciManifest,
        size: expect.any(Number),
      });
    }
    const variants = parseManifestList(fixture('ocilist-variants.json'));
    expect(variants.instances.some((instance) => instance.platform?.variant)).toBe(true);
  });

  it.each([
    [
      'a list with layers',
      { schemaVersion: 2, mediaType: MediaTypes.OciIndex, manifests: [], layers: [] },
      /unexpected fields \["layers"\]/,
    ],
    [
      'a Docker list without mediaType',
      { schemaVersion: 2, manifests: [{ mediaType: MediaTypes.DockerManifest, digest: digestA, size: 1 }] },
      /Docker manifest list: missing mediaType/,
    ],
    [
      'an entry with a bad digest',
      {
        schemaVersion: 2,
        mediaType: MediaTypes.OciIndex,
        manifests: [{ mediaType: MediaTypes.OciManifest, digest: 'md5:x', size: 1 }],
      },
      /manifest 0: invalid digest/,
    ],
    [
      'an entry with a bad platform',
      {
        schemaVersion: 2,
        mediaType: MediaTypes.OciIndex,
        manifests: [{ mediaType: MediaTypes.OciManifest, digest: digestA, size: 1, platform: 'linux' }],
      },
      /platform/,
    ],
  ])('rejects %s', (_name, value, message) => {
    const mediaType = (value as { mediaType?: string }).mediaType ?? MediaTypes.DockerManifestList;
    expect(() => parseManifestList(json(value), mediaType)).toThrow(message);
  });

  it('refuses single images', () => {
    expect(() => parseManifestList(fixture('v2s2.manifest.json'))).toThrow(
      expect.objectContaining({ code: ErrorCodes.UnsupportedManifestType }),
    );
  });
});

describe('layerCompressionOf', () => {
  it.each([
    [MediaTypes.OciLayer, 'none'],
    [MediaTypes.OciLayerGzip, 'gzip'],
    [MediaTypes.OciLayerZstd, 'zstd'],
    [MediaTypes.OciLayerNondistributableGzip, 'gzip'],
    [MediaTypes.DockerLayer, 'none'],
    [MediaTypes.DockerLayerGzip, 'gzip'],
    [MediaTypes.DockerLayerForeignGzip, 'gzip'],
    [MediaTypes.DockerLayerForeign, 'none'],
    ['application/vnd.oci.image.layer.v1.tar+gzip+encrypted', 'unknown'],
    [undefined, 'unknown'],
  ])('%s -> %s', (mediaType, expected) => {
    expect(layerCompressionOf(mediaType)).toBe(expected);
  });
});

describe('JSON nesting limit (Go encoding/json maxNestingDepth)', () => {
  const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
  const manifestWith = (extra: string) =>
    new TextEncoder().encode(
      `{"schemaVersion":2,"mediaType":"${MediaTypes.OciManifest}","config":{"mediaType":"${MediaTypes.OciConfig}","digest":"sha256:${'a'.repeat(64)}","size":2},"layers":[],"x":${extra}}`,
    );

  it('counts arrays and objects, not brackets inside strings', () => {
    const encode = (text: string) => new TextEncoder().encode(text);
    expect(jsonNestingExceeds(encode(nested(3)), 3)).toBe(false);
    expect(jsonNestingExceeds(encode(nested(4)), 3)).toBe(true);
    expect(jsonNestingExceeds(encode('{"a":{"b":{"c":1}}}'), 3)).toBe(false);
    expect(jsonNestingExceeds(encode(`["${'['.repeat(50)}", "\\"[[[[["]`), 1)).toBe(false);
  });

  it('accepts a manifest nested exactly to the limit', () => {
    // The manifest object itself is one level.
    expect(parseManifest(manifestWith(nested(maximumJsonNestingDepth - 1))).layers).toEqual([]);
  });

  it('refuses a manifest nested deeper, naming the limit', () => {
    expect(() => parseManifest(manifestWith(nested(200_000)))).toThrow(
      expect.objectContaining({
        code: ErrorCodes.InvalidManifest,
        message: expect.stringMatching(/JSON nested deeper than 10000 levels/),
      }),
    );
  });
});
