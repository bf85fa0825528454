import { type Digest, digestOf, ErrorCodes, MediaTypes, parseDigest } from '@gantry/core/transport';
import { describe, expect, it } from 'vitest';
import {
  instanceMediaType,
  listInstanceMediaTypes,
  manifestReferences,
  manifestStorageDigest,
  reachableDigests,
} from './manifests.js';

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const digest = (letter: string) => parseDigest(`sha256:${letter.repeat(64)}`);

const config = digest('c');
const layer = digest('d');
const manifest = encode({
  schemaVersion: 2,
  mediaType: MediaTypes.OciManifest,
  config: { mediaType: MediaTypes.OciConfig, digest: config, size: 2 },
  layers: [{ mediaType: MediaTypes.OciLayerGzip, digest: layer, size: 3 }],
});
const manifestDigest = digestOf(manifest);
const list = encode({
  schemaVersion: 2,
  mediaType: MediaTypes.OciIndex,
  manifests: [
    { mediaType: MediaTypes.OciManifest, digest: manifestDigest, size: manifest.byteLength },
    { digest: digest('e'), size: 1 },
  ],
});
const listDigest = digestOf(list);

describe('manifestReferences', () => {
  it('lists config and layers of a manifest, and the instances of an index', () => {
    expect(manifestReferences(manifest, MediaTypes.OciManifest, 'm')).toEqual({
      blobs: [config, layer],
      manifests: [],
    });
    expect(manifestReferences(list, '', 'm').manifests).toEqual([
      { digest: manifestDigest, mediaType: MediaTypes.OciManifest },
      { digest: digest('e'), mediaType: '' },
    ]);
  });

  it('refuses what it does not understand, using the guess given for missing types', () => {
    expect(() => manifestReferences(manifest, MediaTypes.DockerSchema1Signed, 'm')).toThrow(
      expect.objectContaining({ code: ErrorCodes.UnsupportedManifestType }),
    );
    expect(() => manifestReferences(manifest, '', 'm', () => '')).toThrow(
      /m has unsupported manifest type ""/,
    );
    expect(() => manifestReferences(encode({ layers: {} }), MediaTypes.OciManifest, 'm')).toThrow(
      /m has "layers" that is not an array/,
    );
  });
});

describe('reachableDigests', () => {
  const store = new Map<Digest, Uint8Array>([
    [listDigest, list],
    [manifestDigest, manifest],
    [digest('e'), encode({ schemaVersion: 2, mediaType: MediaTypes.OciManifest, layers: [] })],
  ]);
  const read = async (wanted: Digest) => store.get(wanted);

  it('follows indexes to manifests to blobs', async () => {
    const reachable = await reachableDigests(read, [{ digest: listDigest, mediaType: MediaTypes.OciIndex }]);
    expect([...reachable].sort()).toEqual([listDigest, manifestDigest, config, layer, digest('e')].sort());
  });

  it('throws when a manifest is missing', async () => {
    await expect(reachableDigests(read, [{ digest: digest('f'), mediaType: '' }])).rejects.toMatchObject({
      code: ErrorCodes.InvalidLayout,
      message: `manifest ${digest('f')} referred to by index.json is missing`,
    });
  });
});

describe('manifestStorageDigest', () => {
  it('uses the canonical digest for the top level and checks instance digests', () => {
    expect(manifestStorageDigest(manifest, undefined)).toBe(manifestDigest);
    expect(manifestStorageDigest(manifest, manifestDigest)).toBe(manifestDigest);
    expect(() => manifestStorageDigest(manifest, listDigest)).toThrow(
      expect.objectContaining({ code: ErrorCodes.DigestMismatch }),
    );
  });
});

describe('instance media types', () => {
  it('come from the list, then from typed index.json entries, then from the guess', () => {
    const types = listInstanceMediaTypes({ bytes: list, mediaType: MediaTypes.OciIndex });
    expect([...types]).toEqual([[manifestDigest, MediaTypes.OciManifest]]);
    expect(listInstanceMediaTypes({ bytes: manifest, mediaType: MediaTypes.OciManifest }).size).toBe(0);
    expect(
      listInstanceMediaTypes({ bytes: encode({ manifests: 1 }), mediaType: MediaTypes.OciIndex }).size,
    ).toBe(0);

    const index = {
      entries: [
        {
          mediaType: MediaTypes.DockerManifest,
          digest: digest('e'),
          size: 1,
          referenceName: undefined,
          raw: {},
        },
      ],
      raw: {},
    };
    expect(instanceMediaType(manifestDigest, manifest, types, index)).toBe(MediaTypes.OciManifest);
    expect(instanceMediaType(digest('e'), manifest, types, index)).toBe(MediaTypes.DockerManifest);
    expect(instanceMediaType(digest('f'), manifest, types, index, () => 'guessed')).toBe('guessed');
    expect(instanceMediaType(digest('f'), manifest, types, index)).toBe(MediaTypes.OciManifest);
  });
});
