import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { digestOf } from '../digest.js';
import { manifestDigest, schema1SignedPayload } from './digests.js';
import { libtrustKeyId, schema1SignaturesVerify, signSchema1Manifest } from './schema1-sign.js';

const payload = new TextEncoder().encode(
  '{"name":"","tag":"","architecture":"amd64","fsLayers":[],"history":[],"schemaVersion":1}',
);

describe('signSchema1Manifest', () => {
  it('writes libtrust prettyjws: the payload up to its closing brace, then the signatures', () => {
    const signed = signSchema1Manifest(payload, { now: new Date('2026-01-02T03:04:05.678Z') });
    const text = Buffer.from(signed).toString();
    expect(
      text.startsWith(
        Buffer.from(payload)
          .subarray(0, payload.length - 1)
          .toString(),
      ),
    ).toBe(true);
    expect(text.endsWith(']}')).toBe(true);
    const parsed = JSON.parse(text);
    expect(parsed.signatures).toHaveLength(1);
    expect(parsed.signatures[0].header.alg).toBe('ES256');
    expect(Object.keys(parsed.signatures[0].header.jwk)).toEqual(['crv', 'kid', 'kty', 'x', 'y']);
    const header = JSON.parse(Buffer.from(parsed.signatures[0].protected, 'base64url').toString());
    expect(header).toEqual({
      formatLength: payload.length - 1,
      formatTail: 'fQ',
      time: '2026-01-02T03:04:05Z',
    });
    // The digest is the payload's, whatever the key.
    expect(Buffer.from(schema1SignedPayload(signed)).equals(Buffer.from(payload))).toBe(true);
    expect(manifestDigest(signed)).toBe(digestOf(payload));
    expect(schema1SignaturesVerify(signed, payload)).toBe(true);
    const tampered = Buffer.from(text.replace('"amd64"', '"arm64"'));
    expect(schema1SignaturesVerify(tampered, schema1SignedPayload(tampered))).toBe(false);
  });

  it('makes a fresh key each time, named by its libtrust key ID', () => {
    const first = JSON.parse(Buffer.from(signSchema1Manifest(payload)).toString());
    const second = JSON.parse(Buffer.from(signSchema1Manifest(payload)).toString());
    expect(first.signatures[0].header.jwk.kid).not.toBe(second.signatures[0].header.jwk.kid);
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(libtrustKeyId(publicKey)).toMatch(/^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/);
  });
});
