import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { digestOf } from '../digest.js';
import { ErrorCodes } from '../errors.js';
import {
  guessManifestMediaType,
  manifestDigest,
  manifestMatchesDigest,
  normalizeManifestMediaType,
  schema1SignedPayload,
} from './digests.js';
import { MediaTypes } from './media-types.js';

const fixture = (name: string): Uint8Array => readFileSync(path.join(import.meta.dirname, 'fixtures', name));
const json = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

// Digests documented in containers/image manifest/fixtures_info_test.go.
const v2s1Digest = 'sha256:7364fea9d84ee548ab67d4c46c6006289800c98de3fbf8c0a97138dfcc23f000';
const v2s2Digest = 'sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55';

describe('guessManifestMediaType', () => {
  it.each([
    ['v2s2.manifest.json', MediaTypes.DockerManifest],
    ['v2s2nomime.manifest.json', MediaTypes.DockerManifest],
    ['v2list.manifest.json', MediaTypes.DockerManifestList],
    ['ociv1.manifest.json', MediaTypes.OciManifest],
    ['ociv1nomime.manifest.json', MediaTypes.OciManifest],
    ['ociv1.artifact.json', MediaTypes.OciManifest],
    ['ociv1.image.index.json', MediaTypes.OciIndex],
    ['ociv1nomime.image.index.json', MediaTypes.OciIndex],
    ['v2s1.manifest.json', MediaTypes.DockerSchema1Signed],
    ['v2s1-unsigned.manifest.json', MediaTypes.DockerSchema1],
    ['unknown-version.manifest.json', ''],
    ['non-json.manifest.json', ''],
  ])('%s -> %s', (name, expected) => {
    expect(guessManifestMediaType(fixture(name))).toBe(expected);
  });

  it.each([
    [
      { schemaVersion: 2, mediaType: 'application/x-unknown', config: { mediaType: MediaTypes.OciConfig } },
      MediaTypes.OciManifest,
    ],
    [{ schemaVersion: 2, layers: [] }, MediaTypes.OciManifest],
    [{ schemaVersion: 2, manifests: [] }, MediaTypes.OciManifest],
    [{ schemaVersion: 2, manifests: [{}], config: { mediaType: 'x/y' } }, 'x/y'],
    [{ schemaVersion: 1, signatures: [] }, MediaTypes.DockerSchema1Signed],
    [{ schemaVersion: 1, signatures: null }, MediaTypes.DockerSchema1],
    [{ schemaVersion: 3 }, ''],
    [[1, 2], ''],
    ['string', ''],
  ])('%j -> %s', (value, expected) => {
    expect(guessManifestMediaType(json(value))).toBe(expected);
  });
});

describe('normalizeManifestMediaType', () => {
  it.each([
    [MediaTypes.OciManifest, undefined, MediaTypes.OciManifest],
    [MediaTypes.DockerSchema1, undefined, MediaTypes.DockerSchema1],
    [MediaTypes.DockerManifestList, undefined, MediaTypes.DockerManifestList],
    ['application/json', undefined, MediaTypes.DockerSchema1Signed],
    ['text/plain', undefined, MediaTypes.DockerSchema1Signed],
    ['', undefined, MediaTypes.DockerSchema1Signed],
    ['', fixture('ociv1.manifest.json'), MediaTypes.OciManifest],
    ['text/plain', fixture('v2list.manifest.json'), MediaTypes.DockerManifestList],
    ['text/plain', fixture('non-json.manifest.json'), MediaTypes.DockerSchema1Signed],
  ])('%s (bytes: %s) -> %s', (mediaType, bytes, expected) => {
    expect(normalizeManifestMediaType(mediaType, bytes)).toBe(expected);
  });
});

describe('manifestDigest', () => {
  it('digests the exact bytes of non-schema1-signed manifests', () => {
    expect(manifestDigest(fixture('v2s2.manifest.json'))).toBe(v2s2Digest);
    const bytes = fixture('ociv1.manifest.json');
    expect(manifestDigest(bytes)).toBe(digestOf(bytes));
    expect(manifestDigest(bytes, 'sha512')).toBe(digestOf(bytes, 'sha512'));
  });

  it('digests the JWS payload of a signed schema1 manifest', () => {
    const signed = fixture('v2s1.manifest.json');
    expect(manifestDigest(signed)).toBe(v2s1Digest);
    expect(manifestDigest(signed)).not.toBe(digestOf(signed));
    // The payload is the manifest without its signatures, i.e. the unsigned variant.
    expect(manifestDigest(fixture('v2s1-unsigned.manifest.json'))).toBe(v2s1Digest);
    expect(
      Buffer.from(schema1SignedPayload(signed)).equals(Buffer.from(fixture('v2s1-unsigned.manifest.json'))),
    ).toBe(true);
  });

  it('rejects signed schema1 manifests with malformed signatures', () => {
    expect(() => manifestDigest(fixture('v2s1-invalid-signatures.manifest.json'))).toThrow(
      expect.objectContaining({ code: ErrorCodes.InvalidManifest }),
    );
    const header = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const base = { schemaVersion: 1, fsLayers: [] };
    for (const signatures of [
      [{ protected: header({ formatTail: 'fQ' }) }],
      [{ protected: header({ formatLength: 1e9, formatTail: 'fQ' }) }],
      [{ protected: header({ formatLength: 3 }) }],
      [{ protected: '!!!' }],
      [{}],
      [
        { protected: header({ formatLength: 3, formatTail: 'fQ' }) },
        { protected: header({ formatLength: 4, formatTail: 'fQ' }) },
      ],
    ]) {
      expect(() => manifestDigest(json({ ...base, signatures }))).toThrow(
        expect.objectContaining({ code: ErrorCodes.InvalidManifest }),
      );
    }
  });

  it('manifestMatchesDigest compares with the digest algorithm of the expected digest', () => {
    const signed = fixture('v2s1.manifest.json');
    expect(manifestMatchesDigest(signed, v2s1Digest)).toBe(true);
    expect(manifestMatchesDigest(signed, digestOf(signed))).toBe(false);
    const bytes = fixture('v2s2.manifest.json');
    expect(manifestMatchesDigest(bytes, digestOf(bytes, 'sha384'))).toBe(true);
    expect(manifestMatchesDigest(bytes, digestOf('other', 'sha384'))).toBe(false);
  });
});
