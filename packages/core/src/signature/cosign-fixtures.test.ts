/**
 * Sigstore signatures and key files made by the real tools Debian's skopeo cannot stand in for (its
 * sigstore code is disabled, docs/notes/skopeo-sigstore.md): signatures made by cosign and by
 * containers/image (skopeo), with Fulcio certificates and Rekor SETs of the public Sigstore instances
 * and with a private PKI (fixtures/containers-image, from containers/image's signature fixtures), and
 * encrypted private key files written by cosign (fixtures/cosign, from cosign's key tests).
 * Gantry must accept and reject them as containers/image does.
 */
import { createPublicKey, verify as verifyBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fakeReference } from '../copy/test-support.js';
import { evaluatePolicy, parsePolicy } from '../policy/index.js';
import { parseNormalizedNamed } from '../reference/index.js';
import {
  readSigstorePrivateKey,
  readSigstorePublicKey,
  signSigstore,
  verifySigstoreSignature,
} from './sigstore.js';
import { parseStoredSignature } from './stored.js';

const fixtures = fileURLToPath(new URL('./fixtures/containers-image/', import.meta.url));
const fixture = (name: string) => `${fixtures}${name}`;

/** Evaluates `requirement` (a sigstoreSigned object) for the fixture image `directory` named `name`. */
async function evaluateFixture(
  directory: string,
  name: string,
  requirement: Record<string, unknown>,
): Promise<void> {
  const manifest = await readFile(fixture(`${directory}/manifest.json`));
  const signature = await readFile(fixture(`${directory}/signature-1`));
  const policy = parsePolicy(
    JSON.stringify({
      default: [{ type: 'sigstoreSigned', signedIdentity: { type: 'matchRepository' }, ...requirement }],
    }),
    'fixture policy',
  );
  const reference = fakeReference({ name, dockerReference: parseNormalizedNamed(name) });
  await evaluatePolicy(policy, reference, {
    manifest: { bytes: manifest, mediaType: 'application/vnd.docker.distribution.manifest.v2+json' },
    signatures: [signature],
  });
}

const fulcio = {
  caPath: fixture('fulcio_v1.crt.pem'),
  oidcIssuer: 'https://github.com/login/oauth',
  subjectEmail: 'mitr@redhat.com',
};
const pki = {
  caRootsPath: fixture('pki_root_crts.pem'),
  caIntermediatesPath: fixture('pki_intermediate_crts.pem'),
  subjectEmail: 'qiwan@redhat.com',
  subjectHostname: 'myhost.example.com',
};

describe('signatures made by cosign and containers/image', () => {
  it('accepts a cosign signature by a key, and one containers/image made, with the key; rejects another key', async () => {
    await expect(
      evaluateFixture('dir-img-cosign-valid', '192.168.64.2:5000/cosign-signed-single-sample', {
        keyPath: fixture('cosign.pub'),
      }),
    ).resolves.toBeUndefined();
    await expect(
      evaluateFixture('dir-img-cosign-valid-with-tag', '192.168.64.2:5000/skopeo-signed:tag', {
        keyPaths: [fixture('cosign2.pub'), fixture('cosign.pub')],
        signedIdentity: { type: 'matchExact' },
      }),
    ).resolves.toBeUndefined();
    await expect(
      evaluateFixture('dir-img-cosign-valid-with-tag', '192.168.64.2:5000/skopeo-signed:othertag', {
        keyPath: fixture('cosign.pub'),
        signedIdentity: { type: 'matchExact' },
      }),
    ).rejects.toThrow('Signature for identity 192.168.64.2:5000/skopeo-signed:tag is not accepted');
    await expect(
      evaluateFixture('dir-img-cosign-valid', '192.168.64.2:5000/cosign-signed-single-sample', {
        keyPath: fixture('cosign2.pub'),
      }),
    ).rejects.toThrow('cryptographic signature verification failed');
  });

  it('rejects a cosign signature for a manifest changed after signing, and one whose manifest has no usable digest', async () => {
    await expect(
      evaluateFixture('dir-img-cosign-modified-manifest', '192.168.64.2:5000/cosign-signed-single-sample', {
        keyPath: fixture('cosign.pub'),
      }),
    ).rejects.toThrow(/^Signature for digest sha256:[0-9a-f]{64} does not match/);
    // A schema1 manifest whose JWS signatures are broken: its digest cannot be computed.
    await expect(
      evaluateFixture(
        'dir-img-cosign-manifest-digest-error',
        '192.168.64.2:5000/cosign-signed-single-sample',
        {
          keyPath: fixture('cosign.pub'),
        },
      ),
    ).rejects.toThrow('invalid signed schema1 manifest');
  });

  it('verifies a Rekor SET of the public Rekor log offline, and rejects it with another Rekor key', async () => {
    const keyRekor = {
      keyPath: fixture('cosign2.pub'),
      rekorPublicKeyPath: fixture('rekor.pub'),
    };
    await expect(
      evaluateFixture('dir-img-cosign-key-rekor-valid', '192.168.64.2:5000/cosign-signed/key-1', keyRekor),
    ).resolves.toBeUndefined();
    await expect(
      evaluateFixture('dir-img-cosign-key-rekor-valid', '192.168.64.2:5000/cosign-signed/key-1', {
        ...keyRekor,
        rekorPublicKeyPath: fixture('cosign.pub'),
      }),
    ).rejects.toThrow('No public key verified against the RekorSET');
  });

  it("verifies a Fulcio certificate of the public Fulcio CA at the Rekor entry's time, offline; rejects another email, issuer or CA", async () => {
    const name = '192.168.64.2:5000/cosign-signed/fulcio-rekor-1';
    const requirement = { fulcio, rekorPublicKeyPath: fixture('rekor.pub') };
    await expect(
      evaluateFixture('dir-img-cosign-fulcio-rekor-valid', name, requirement),
    ).resolves.toBeUndefined();
    await expect(
      evaluateFixture('dir-img-cosign-fulcio-rekor-valid', name, {
        ...requirement,
        fulcio: { ...fulcio, subjectEmail: 'this-does-not-match@example.com' },
      }),
    ).rejects.toThrow('this-does-not-match@example.com');
    await expect(
      evaluateFixture('dir-img-cosign-fulcio-rekor-valid', name, {
        ...requirement,
        fulcio: { ...fulcio, oidcIssuer: 'https://example.com' },
      }),
    ).rejects.toThrow('Unexpected Fulcio OIDC issuer');
    await expect(
      evaluateFixture('dir-img-cosign-fulcio-rekor-valid', name, {
        ...requirement,
        fulcio: { ...fulcio, caPath: fixture('pki_root_crts.pem') },
      }),
    ).rejects.toThrow(/certificate/i);
    // Without the Rekor key, the certificate (valid for minutes, years ago) cannot be placed in time.
    await expect(evaluateFixture('dir-img-cosign-fulcio-rekor-valid', name, { fulcio })).rejects.toThrow();
  });

  it('verifies a signature by a PKI certificate (RSA, base64 with line breaks as cosign writes it); rejects another email or host', async () => {
    await expect(
      evaluateFixture('dir-img-cosign-pki-valid', 'localhost:5000/test', { pki }),
    ).resolves.toBeUndefined();
    await expect(
      evaluateFixture('dir-img-cosign-pki-valid', 'localhost:5000/test', {
        pki: { ...pki, subjectHostname: 'other.example.com' },
      }),
    ).rejects.toThrow('other.example.com');
    await expect(
      evaluateFixture('dir-img-cosign-pki-valid', 'localhost:5000/test', {
        pki: { ...pki, subjectEmail: 'other@example.com' },
      }),
    ).rejects.toThrow('other@example.com');
  });

  it('rejects a cosign signature by a key the policy does not name', async () => {
    const stored = parseStoredSignature(await readFile(fixture('unknown-cosign-key.signature')));
    if (stored.format !== 'sigstore') throw new Error('expected a sigstore signature');
    const accept = { validateManifestDigest: () => undefined, validateDockerReference: () => undefined };
    expect(() =>
      verifySigstoreSignature(stored, [readSigstorePublicKey(readFileSync(fixture('cosign.pub')))], accept),
    ).toThrow('cryptographic signature verification failed');
  });
});

describe('private key files written by cosign (fixtures/cosign, from its key tests; passphrase "hello")', () => {
  const hello = new TextEncoder().encode('hello');
  const keyFile = (name: string) =>
    readFile(fileURLToPath(new URL(`./fixtures/cosign/${name}`, import.meta.url)));

  it.each([
    ['ENCRYPTED COSIGN PRIVATE KEY', 'cosign-labelled.key'],
    ['ENCRYPTED SIGSTORE PRIVATE KEY', 'sigstore-labelled.key'],
  ])(
    'decrypts a %s file; the key signs what its public key verifies; a wrong passphrase fails',
    async (_type, name) => {
      const pem = await keyFile(name);
      const privateKey = await readSigstorePrivateKey(pem, hello);
      const signed = signSigstore(
        new TextEncoder().encode('{"schemaVersion":2}'),
        'example.com/a:b',
        privateKey,
      );
      const signature = Buffer.from(signed.annotations['dev.cosignproject.cosign/signature']!, 'base64');
      expect(verifyBytes('sha256', signed.payload, createPublicKey(privateKey), signature)).toBe(true);
      await expect(readSigstorePrivateKey(pem, new TextEncoder().encode('hell'))).rejects.toThrow(
        'decrypt: encrypted: decryption failed',
      );
    },
  );

  it('refuses, as cosign does, a key file whose decrypted key is not PKCS#8 (scrypt N=65536)', async () => {
    await expect(readSigstorePrivateKey(await keyFile('sec1-inside.key'), hello)).rejects.toThrow(
      /^parsing private key: /,
    );
  });
});
