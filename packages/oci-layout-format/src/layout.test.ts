import { digestOf, ErrorCodes, parseDigest } from '@gantry/core/transport';
import { describe, expect, it } from 'vitest';
import {
  blobEntryName,
  checkLayoutFile,
  checkManifestMatchesEntry,
  layoutFileContent,
  parseDescriptor,
  parseIndex,
  serializeIndex,
} from './layout.js';

const digest = parseDigest(`sha256:${'a'.repeat(64)}`);
const bytes = (value: unknown) =>
  new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));

describe('parseIndex and serializeIndex', () => {
  it('keeps unknown members of the index and its entries when rewriting', () => {
    const index = parseIndex(
      bytes({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        annotations: { x: 'y' },
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest,
            size: 10,
            platform: { os: 'linux' },
            annotations: { 'org.opencontainers.image.ref.name': 'app' },
          },
        ],
      }),
      'index.json',
    );
    expect(index.entries).toHaveLength(1);
    expect(index.entries[0]?.referenceName).toBe('app');
    expect(index.entries[0]?.size).toBe(10);
    expect(JSON.parse(serializeIndex(index))).toEqual({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      annotations: { x: 'y' },
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest,
          size: 10,
          platform: { os: 'linux' },
          annotations: { 'org.opencontainers.image.ref.name': 'app' },
        },
      ],
    });
  });

  it('accepts an index without manifests, and entries without media type or size', () => {
    expect(parseIndex(bytes({}), 'index.json').entries).toEqual([]);
    const entry = parseIndex(bytes({ manifests: [{ digest }] }), 'index.json').entries[0];
    expect(entry).toMatchObject({ mediaType: '', size: -1, referenceName: undefined });
  });

  it.each([
    ['not json', /index.json is not valid JSON/],
    [[], /index.json is not a JSON object/],
    [{ schemaVersion: 1 }, /schemaVersion 1, expected 2/],
    [{ manifests: {} }, /"manifests" member that is not an array/],
    [{ manifests: [1] }, /manifests\[0\] is not a JSON object/],
    [{ manifests: [{ digest: 'sha256:short' }] }, /manifests\[0\] has an invalid digest/],
    [{ manifests: [{}] }, /manifests\[0\] has no digest/],
    [{ manifests: [{ digest, size: 1.5 }] }, /has an invalid size 1.5/],
    [{ manifests: [{ digest, mediaType: 3 }] }, /mediaType that is not a string/],
    [{ manifests: [{ digest, annotations: [] }] }, /annotations that are not a JSON object/],
    [
      { manifests: [{ digest, annotations: { 'org.opencontainers.image.ref.name': 1 } }] },
      /ref.name annotation that is not a string/,
    ],
  ])('rejects %j', (content, message) => {
    expect(() => parseIndex(bytes(content), 'index.json')).toThrow(
      expect.objectContaining({ code: ErrorCodes.InvalidLayout, message: expect.stringMatching(message) }),
    );
  });
});

describe('parseDescriptor', () => {
  it('validates the digest (no path can be built from anything else)', () => {
    expect(() => parseDescriptor({ digest: 'sha256:../../etc' }, 'config')).toThrow(
      /config has an invalid digest/,
    );
  });
});

describe('oci-layout', () => {
  it('writes version 1.0.0 and accepts any 1.x.y', () => {
    expect(JSON.parse(layoutFileContent())).toEqual({ imageLayoutVersion: '1.0.0' });
    expect(() => checkLayoutFile(bytes(layoutFileContent()), 'oci-layout')).not.toThrow();
    expect(() => checkLayoutFile(bytes({ imageLayoutVersion: '1.1.0' }), 'oci-layout')).not.toThrow();
  });

  it('rejects other versions', () => {
    expect(() => checkLayoutFile(bytes({ imageLayoutVersion: '2.0.0' }), 'oci-layout')).toThrow(
      expect.objectContaining({
        code: ErrorCodes.InvalidLayout,
        message: 'oci-layout: unsupported imageLayoutVersion "2.0.0", expected 1.0.0',
      }),
    );
    expect(() => checkLayoutFile(bytes({}), 'oci-layout')).toThrow(
      /unsupported imageLayoutVersion undefined/,
    );
  });
});

describe('blobEntryName', () => {
  it('builds blobs/<alg>/<hex> from a valid digest only', () => {
    expect(blobEntryName(digest)).toBe(`blobs/sha256/${'a'.repeat(64)}`);
    expect(() => blobEntryName(parseDigest('sha256:../x'))).toThrow();
  });
});

describe('checkManifestMatchesEntry', () => {
  const manifest = bytes({ schemaVersion: 2, layers: [] });
  const entry = (fields: Record<string, unknown>) =>
    parseDescriptor(
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...fields },
      'index.json entry 0',
    );

  it('accepts the bytes the entry describes (with or without a size)', () => {
    checkManifestMatchesEntry(entry({ digest: digestOf(manifest), size: manifest.length }), manifest, 'L');
    checkManifestMatchesEntry(entry({ digest: digestOf(manifest) }), manifest, 'L');
  });

  it('refuses bytes of another digest or size, naming both', () => {
    expect(() =>
      checkManifestMatchesEntry(entry({ digest, size: manifest.length }), manifest, 'OCI layout /l'),
    ).toThrow(
      expect.objectContaining({
        code: ErrorCodes.InvalidLayout,
        message: `manifest ${digest} in OCI layout /l has digest ${digestOf(manifest)}: the layout is corrupt`,
      }),
    );
    expect(() =>
      checkManifestMatchesEntry(entry({ digest: digestOf(manifest), size: 10 }), manifest, 'OCI layout /l'),
    ).toThrow(
      expect.objectContaining({
        code: ErrorCodes.InvalidLayout,
        message: `manifest ${digestOf(manifest)} in OCI layout /l is ${manifest.length} bytes, but index.json says 10: the layout is corrupt`,
      }),
    );
  });
});
