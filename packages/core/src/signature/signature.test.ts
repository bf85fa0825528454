import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manifestDigest } from '../manifest/index.js';
import { createTestGpgKey, type TestGpgKey } from '../testing/gpg.js';
import { createPayload, parsePayload, sigstoreType, simpleSigningType } from './payload.js';
import {
  generateSigstoreKeyPair,
  readSigstorePrivateKey,
  readSigstorePublicKey,
  signSigstore,
  verifySigstoreSignature,
} from './sigstore.js';
import {
  readGpgPublicKeys,
  readUntrustedSimpleSigningSignature,
  signSimpleSigning,
  verifySimpleSigningSignature,
} from './simple-signing.js';
import { verifyStandaloneSignature } from './standalone.js';
import { parseStoredSignature, sigstoreSignatureBlob } from './stored.js';

const execFileAsync = promisify(execFile);
const manifest = new TextEncoder().encode(
  '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}',
);
const digest = manifestDigest(manifest);
const identity = 'registry.example/app:v1';

let root: string;
let key: TestGpgKey;
let otherKey: TestGpgKey;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'gsig-'));
  key = await createTestGpgKey(root);
  otherKey = await createTestGpgKey(root, { homeName: 'other', userId: 'Other <other@example.com>' });
}, 120_000);

afterAll(async () => {
  await key?.dispose();
  await otherKey?.dispose();
  if (root) await rm(root, { recursive: true, force: true });
});

const acceptAll = {
  validateKeyFingerprint: () => undefined,
  validateManifestDigest: () => undefined,
  validateDockerReference: () => undefined,
};

async function skopeo(args: string[], env: Record<string, string> = {}) {
  return execFileAsync('/usr/bin/skopeo', args, { env: { ...process.env, ...env } });
}

describe('simple signing', () => {
  it('signs through gpg and verifies with OpenPGP.js, naming the digest, identity and key', async () => {
    const signature = await signSimpleSigning(manifest, identity, key.fingerprint, {
      env: { ...process.env, GNUPGHOME: key.home },
    });
    const keys = await readGpgPublicKeys([await readFile(key.publicKeyPath)]);
    expect(keys.fingerprints).toEqual([key.fingerprint]);
    const verified = await verifySimpleSigningSignature(signature, keys, acceptAll);
    expect(verified).toEqual({
      dockerManifestDigest: digest,
      dockerReference: identity,
      keyFingerprint: key.fingerprint,
    });
    const untrusted = await readUntrustedSimpleSigningSignature(signature);
    expect(untrusted).toMatchObject({
      dockerManifestDigest: digest,
      dockerReference: identity,
      creator: 'atomic gantry',
    });
    expect(key.fingerprint.endsWith(untrusted.shortKeyIdentifier)).toBe(true);
  }, 60_000);

  it('rejects a signature by another key, a tampered signature and a key file that is not a key', async () => {
    const signature = await signSimpleSigning(manifest, identity, key.fingerprint, {
      env: { ...process.env, GNUPGHOME: key.home },
    });
    const otherKeys = await readGpgPublicKeys([await readFile(otherKey.publicKeyPath)]);
    await expect(verifySimpleSigningSignature(signature, otherKeys, acceptAll)).rejects.toThrow(
      /Invalid GPG signature/,
    );
    const tampered = new Uint8Array(signature);
    tampered[tampered.length - 20]! ^= 0xff;
    const keys = await readGpgPublicKeys([await readFile(key.publicKeyPath)]);
    await expect(verifySimpleSigningSignature(tampered, keys, acceptAll)).rejects.toMatchObject({
      code: 'ERR_GANTRY_INVALID_SIGNATURE',
    });
    expect((await readGpgPublicKeys([new TextEncoder().encode('not a key')])).fingerprints).toEqual([]);
  }, 60_000);

  it('signs with a passphrase-protected key given its passphrase, and fails with a wrong one', async () => {
    const protectedKey = await createTestGpgKey(root, { homeName: 'protected', passphrase: 'open sesame' });
    try {
      const env = { ...process.env, GNUPGHOME: protectedKey.home };
      await expect(
        signSimpleSigning(manifest, identity, protectedKey.fingerprint, { env, passphrase: 'wrong' }),
      ).rejects.toMatchObject({ code: 'ERR_GANTRY_SIGNING_FAILED' });
      const signature = await signSimpleSigning(manifest, identity, protectedKey.fingerprint, {
        env,
        passphrase: 'open sesame',
      });
      const keys = await readGpgPublicKeys([await readFile(protectedKey.publicKeyPath)]);
      await expect(verifySimpleSigningSignature(signature, keys, acceptAll)).resolves.toMatchObject({
        keyFingerprint: protectedKey.fingerprint,
      });
    } finally {
      await protectedKey.dispose();
    }
  }, 60_000);

  it('fails clearly when gpg has no such secret key', async () => {
    await expect(
      signSimpleSigning(manifest, identity, otherKey.fingerprint, {
        env: { ...process.env, GNUPGHOME: key.home },
      }),
    ).rejects.toMatchObject({ code: 'ERR_GANTRY_SIGNING_FAILED' });
  }, 60_000);

  it('round-trips with skopeo standalone-sign and standalone-verify both ways', async () => {
    const manifestPath = path.join(root, 'manifest.json');
    await writeFile(manifestPath, manifest);
    // skopeo signs, Gantry verifies.
    const skopeoSignature = path.join(root, 'skopeo.sig');
    await skopeo(['standalone-sign', manifestPath, identity, key.fingerprint, '-o', skopeoSignature], {
      GNUPGHOME: key.home,
    });
    const keys = await readGpgPublicKeys([await readFile(key.publicKeyPath)]);
    const verified = await verifyStandaloneSignature(
      await readFile(skopeoSignature),
      manifest,
      identity,
      keys,
      [key.fingerprint],
    );
    expect(verified.dockerManifestDigest).toBe(digest);
    await expect(
      verifyStandaloneSignature(await readFile(skopeoSignature), manifest, 'registry.example/other:v1', keys),
    ).rejects.toThrow('Docker reference registry.example/app:v1 does not match registry.example/other:v1');
    // Gantry signs, skopeo verifies.
    const gantrySignature = path.join(root, 'gantry.sig');
    await writeFile(
      gantrySignature,
      await signSimpleSigning(manifest, identity, key.fingerprint, {
        env: { ...process.env, GNUPGHOME: key.home },
      }),
    );
    const { stdout } = await skopeo(
      ['standalone-verify', manifestPath, identity, key.fingerprint, gantrySignature],
      {
        GNUPGHOME: key.home,
      },
    );
    expect(stdout).toBe(`Signature verified, digest ${digest}\n`);
  }, 60_000);
});

describe('payload', () => {
  it('is written as Go marshals it and read back', () => {
    const bytes = createPayload(simpleSigningType, {
      dockerManifestDigest: digest,
      dockerReference: identity,
      creator: 'c',
      timestamp: 5,
    });
    expect(new TextDecoder().decode(bytes)).toBe(
      `{"critical":{"identity":{"docker-reference":"${identity}"},"image":{"docker-manifest-digest":"${digest}"},"type":"atomic container signature"},"optional":{"creator":"c","timestamp":5}}`,
    );
    expect(parsePayload(bytes, simpleSigningType)).toEqual({
      dockerManifestDigest: digest,
      dockerReference: identity,
      creator: 'c',
      timestamp: 5,
    });
  });

  it.each([
    ['not JSON', '{', /JSON|end/],
    [
      'wrong type',
      '{"critical":{"identity":{"docker-reference":"a"},"image":{"docker-manifest-digest":"sha256:aa"},"type":"x"},"optional":{}}',
      /Unrecognized signature type x/,
    ],
    [
      'extra key',
      '{"critical":{"identity":{"docker-reference":"a"},"image":{"docker-manifest-digest":"sha256:aa"},"type":"atomic container signature","x":1},"optional":{}}',
      /Unexpected key "x"/,
    ],
    ['duplicate key', '{"critical":{},"critical":{},"optional":{}}', /Duplicate key/],
    [
      'missing identity',
      '{"critical":{"image":{"docker-manifest-digest":"sha256:aa"},"type":"atomic container signature"},"optional":{}}',
      /Key "identity" missing/,
    ],
    [
      'fractional timestamp',
      '{"critical":{"identity":{"docker-reference":"a"},"image":{"docker-manifest-digest":"sha256:aa"},"type":"atomic container signature"},"optional":{"timestamp":1.5}}',
      /not an integer/,
    ],
  ])('refuses a malformed payload: %s', (_name, text, expected) => {
    expect(() => parsePayload(new TextEncoder().encode(text), simpleSigningType)).toThrow(expected);
  });
});

describe('sigstore', () => {
  it('generates a cosign key pair, decrypts it with the passphrase, signs and verifies', async () => {
    const pair = await generateSigstoreKeyPair(new TextEncoder().encode('secret'));
    expect(pair.privateKey).toMatch(/^-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n/);
    const inner = JSON.parse(
      Buffer.from(pair.privateKey.split('\n').slice(1, -2).join(''), 'base64').toString(),
    ) as Record<string, unknown>;
    expect(inner).toMatchObject({
      kdf: { name: 'scrypt', params: { N: 32768, r: 8, p: 1 } },
      cipher: { name: 'nacl/secretbox' },
    });
    const privateKey = await readSigstorePrivateKey(
      new TextEncoder().encode(pair.privateKey),
      new TextEncoder().encode('secret'),
    );
    const publicKey = readSigstorePublicKey(new TextEncoder().encode(pair.publicKey));
    const blob = sigstoreSignatureBlob(signSigstore(manifest, identity, privateKey));
    const parsed = parseStoredSignature(blob);
    if (parsed.format !== 'sigstore') throw new Error('expected a sigstore signature');
    expect(verifySigstoreSignature(parsed, [publicKey], acceptAll)).toMatchObject({
      dockerManifestDigest: digest,
      dockerReference: identity,
    });
    const tampered = {
      ...parsed,
      payload: new TextEncoder().encode(new TextDecoder().decode(parsed.payload).replace('v1', 'v2')),
    };
    expect(() => verifySigstoreSignature(tampered, [publicKey], acceptAll)).toThrow(
      /cryptographic signature verification failed/,
    );
    const other = await generateSigstoreKeyPair(new TextEncoder().encode('x'));
    expect(() =>
      verifySigstoreSignature(
        parsed,
        [readSigstorePublicKey(new TextEncoder().encode(other.publicKey))],
        acceptAll,
      ),
    ).toThrow(/cryptographic signature verification failed/);
  }, 60_000);

  it('refuses a wrong passphrase, a file that is not a key and a public key that is not one', async () => {
    const pair = await generateSigstoreKeyPair(new TextEncoder().encode('secret'));
    await expect(
      readSigstorePrivateKey(new TextEncoder().encode(pair.privateKey), new TextEncoder().encode('wrong')),
    ).rejects.toThrow('decrypt: encrypted: decryption failed');
    await expect(readSigstorePrivateKey(new TextEncoder().encode('junk'), new Uint8Array())).rejects.toThrow(
      'invalid pem block',
    );
    await expect(
      readSigstorePrivateKey(new TextEncoder().encode(pair.publicKey), new Uint8Array()),
    ).rejects.toThrow('unsupported pem type: PUBLIC KEY');
    expect(() => readSigstorePublicKey(new TextEncoder().encode('junk'))).toThrow(/parsing public key/);
  }, 60_000);

  it('reads a stored signature strictly', () => {
    expect(() => parseStoredSignature(new Uint8Array())).toThrow('empty signature');
    expect(() => parseStoredSignature(new TextEncoder().encode('\0sigstore-json\n{'))).toThrow(
      /invalid sigstore signature JSON/,
    );
    expect(parseStoredSignature(new TextEncoder().encode('\0other\nx'))).toEqual({
      format: 'unknown',
      name: 'other',
    });
    expect(() => parseStoredSignature(new TextEncoder().encode('hello'))).toThrow(
      /unrecognized signature format/,
    );
    expect(sigstoreType).toBe('cosign container image signature');
  });
});
