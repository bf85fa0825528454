/**
 * Policy evaluation with real signatures (sigstore keys made here; GPG through gpg), signing on copy,
 * and verifyImage: the decisions and words of containers/image.
 */
import { execFile } from 'node:child_process';
import {
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  type KeyObject,
  sign as signBytes,
} from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyImage } from '../copy/copy.js';
import { fakeDockerReference, fakeReference, RecordingDestination } from '../copy/test-support.js';
import { manifestDigest } from '../manifest/index.js';
import { evaluatePolicy, parsePolicy } from '../policy/index.js';
import { parseNormalizedNamed } from '../reference/index.js';
import { createTestGpgKey, type TestGpgKey } from '../testing/gpg.js';
import {
  buildFixtureImage,
  createFixtureImageSource,
  type FixtureImage,
  type FixtureSignatures,
  fixturePresets,
} from '../testing/index.js';
import type { ImageReference, ImageSource } from '../transport/contract.js';
import { canonicalJson } from './rekor.js';
import {
  generateSigstoreKeyPair,
  readSigstorePrivateKey,
  readSigstorePublicKey,
  signSigstore,
} from './sigstore.js';
import { signSimpleSigning } from './simple-signing.js';
import {
  parseStoredSignature,
  sigstoreCertificateAnnotation,
  sigstoreChainAnnotation,
  sigstoreSetAnnotation,
  sigstoreSignatureAnnotation,
  sigstoreSignatureBlob,
} from './stored.js';
import { verifyImage } from './verify-image.js';

const execFileAsync = promisify(execFile);
const identity = 'registry.example/team/app:v1';
let directory: string;
let image: FixtureImage;
let list: FixtureImage;
let keyFile: string;
let otherKeyFile: string;
let privateKeyFile: string;
let passphraseText: string;
let sign: (manifest: Uint8Array, reference?: string) => Uint8Array;
let gpgKey: TestGpgKey;

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gpol-'));
  image = await buildFixtureImage(fixturePresets.ociMinimal!, { directory: join(directory, 'image') });
  list = await buildFixtureImage(fixturePresets.multiArchOci!, { directory: join(directory, 'list') });
  passphraseText = 'pass phrase';
  const pair = await generateSigstoreKeyPair(new TextEncoder().encode(passphraseText));
  const other = await generateSigstoreKeyPair(new TextEncoder().encode('x'));
  keyFile = join(directory, 'key.pub');
  otherKeyFile = join(directory, 'other.pub');
  privateKeyFile = join(directory, 'key.private');
  await writeFile(keyFile, pair.publicKey);
  await writeFile(otherKeyFile, other.publicKey);
  await writeFile(privateKeyFile, pair.privateKey);
  const privateKey = await readSigstorePrivateKey(
    new TextEncoder().encode(pair.privateKey),
    new TextEncoder().encode(passphraseText),
  );
  sign = (manifest, reference = identity) =>
    sigstoreSignatureBlob(signSigstore(manifest, reference, privateKey));
  gpgKey = await createTestGpgKey(directory);
}, 120_000);

afterAll(async () => {
  await gpgKey?.dispose();
  if (directory) await rm(directory, { recursive: true, force: true });
});

function sourceReference(
  fixture: FixtureImage,
  signatures: FixtureSignatures,
  name = identity,
): ImageReference {
  return fakeReference({
    name,
    dockerReference: parseNormalizedNamed(name),
    openSource: (reference): ImageSource => createFixtureImageSource(fixture, reference, signatures),
  });
}

function sigstorePolicy(extra: Record<string, unknown> = {}, path = keyFile): ReturnType<typeof parsePolicy> {
  return parsePolicy(
    JSON.stringify({ default: [{ type: 'sigstoreSigned', keyPath: path, ...extra }] }),
    'test',
  );
}

async function evaluate(policy: ReturnType<typeof parsePolicy>, signatures: Uint8Array[], name = identity) {
  const reference = sourceReference(image, { signatures }, name);
  return evaluatePolicy(policy, reference, {
    manifest: { bytes: image.topLevel.bytes, mediaType: image.topLevel.mediaType },
    signatures,
  });
}

describe('sigstoreSigned', () => {
  it('accepts a signature by the key for the image, with the default identity rule', async () => {
    await expect(evaluate(sigstorePolicy(), [sign(image.topLevel.bytes)])).resolves.toBeUndefined();
  });

  it.each([
    ['no signature', () => [], 'A signature was required, but no signature exists'],
    [
      'only a GPG signature',
      () => [new Uint8Array([0xa3, 1, 2])],
      'A signature was required, but no signature exists (1 non-sigstore signatures, 0 sigstore non-signature attachments)',
    ],
    [
      'a signature of another manifest',
      () => [sign(new TextEncoder().encode('{"schemaVersion":2}'))],
      /^Signature for digest sha256:[0-9a-f]{64} does not match$/,
    ],
    [
      'a signature for another identity',
      () => [sign(image.topLevel.bytes, 'registry.example/team/app:v2')],
      'Signature for identity registry.example/team/app:v2 is not accepted',
    ],
    [
      'two bad signatures',
      () => [
        sign(image.topLevel.bytes, 'registry.example/team/app:v2'),
        sign(image.topLevel.bytes, 'registry.example/other:v1'),
      ],
      'None of the signatures were accepted, reasons: Signature for identity registry.example/team/app:v2 is not accepted; Signature for identity registry.example/other:v1 is not accepted',
    ],
  ] as const)('rejects %s', async (_name, signatures, expected) => {
    const evaluation = evaluate(sigstorePolicy(), signatures());
    await expect(evaluation).rejects.toMatchObject({ code: 'ERR_GANTRY_POLICY_REJECTED' });
    await expect(evaluation).rejects.toThrow(expected);
  });

  it('rejects a signature by another key, and a key file that is not a key', async () => {
    await expect(evaluate(sigstorePolicy({}, otherKeyFile), [sign(image.topLevel.bytes)])).rejects.toThrow(
      'cryptographic signature verification failed',
    );
    const junk = join(directory, 'junk.pub');
    await writeFile(junk, 'not a key');
    await expect(evaluate(sigstorePolicy({}, junk), [sign(image.topLevel.bytes)])).rejects.toThrow(
      'parsing public key',
    );
  });

  it('accepts with any of keyPaths; a Fulcio CA or PKI root that is not a certificate rejects clearly', async () => {
    const paths = parsePolicy(
      JSON.stringify({ default: [{ type: 'sigstoreSigned', keyPaths: [otherKeyFile, keyFile] }] }),
      'test',
    );
    await expect(evaluate(paths, [sign(image.topLevel.bytes)])).resolves.toBeUndefined();
    const fulcio = parsePolicy(
      JSON.stringify({
        default: [
          {
            type: 'sigstoreSigned',
            fulcio: { caPath: keyFile, oidcIssuer: 'https://issuer.example', subjectEmail: 'a@example.com' },
            rekorPublicKeyPath: keyFile,
          },
        ],
      }),
      'test',
    );
    await expect(evaluate(fulcio, [sign(image.topLevel.bytes)])).rejects.toThrow(
      'loading Fulcio CA: no certificate found',
    );
    const pki = parsePolicy(
      JSON.stringify({
        default: [{ type: 'sigstoreSigned', pki: { caRootsPath: keyFile, subjectEmail: 'a@example.com' } }],
      }),
      'test',
    );
    await expect(evaluate(pki, [sign(image.topLevel.bytes)])).rejects.toThrow(
      'loading PKI roots: no certificate found',
    );
  });

  it('applies remapIdentity and matchRepository to the image reference', async () => {
    const remapped = sigstorePolicy({
      signedIdentity: {
        type: 'remapIdentity',
        prefix: 'mirror.example/team',
        signedPrefix: 'registry.example/team',
      },
    });
    await expect(
      evaluate(remapped, [sign(image.topLevel.bytes)], 'mirror.example/team/app:v1'),
    ).resolves.toBeUndefined();
    await expect(
      evaluate(remapped, [sign(image.topLevel.bytes)], 'mirror.example/elsewhere/app:v1'),
    ).rejects.toThrow('Signature for identity registry.example/team/app:v1 is not accepted');
    const repository = sigstorePolicy({ signedIdentity: { type: 'matchRepository' } });
    await expect(
      evaluate(repository, [sign(image.topLevel.bytes, 'registry.example/team/app:other')]),
    ).resolves.toBeUndefined();
  });
});

describe('sigstoreSigned with a Rekor public key', () => {
  /** Adds a Rekor SET (made with `rekorKey`) for `blob`'s signature, naming `signingKey`. */
  function withSet(
    blob: Uint8Array,
    signingKey: KeyObject | string,
    rekorKey: KeyObject,
    payloadOverride?: Uint8Array,
    extraAnnotations: Record<string, string> = {},
  ): Uint8Array {
    const parsed = parseStoredSignature(blob);
    if (parsed.format !== 'sigstore') throw new Error('expected a sigstore signature');
    const body = {
      apiVersion: '0.0.1',
      kind: 'hashedrekord',
      spec: {
        data: {
          hash: {
            algorithm: 'sha256',
            value: createHash('sha256')
              .update(payloadOverride ?? parsed.payload)
              .digest('hex'),
          },
        },
        signature: {
          content: parsed.annotations[sigstoreSignatureAnnotation],
          publicKey: {
            content: Buffer.from(
              typeof signingKey === 'string'
                ? signingKey
                : signingKey.export({ format: 'pem', type: 'spki' }).toString(),
            ).toString('base64'),
          },
        },
      },
    };
    const payload = {
      body: Buffer.from(JSON.stringify(body)).toString('base64'),
      integratedTime: Math.floor(Date.now() / 1000),
      logIndex: 42,
      logID: 'c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d',
    };
    const timestamp = signBytes('sha256', Buffer.from(canonicalJson(payload)), rekorKey);
    return sigstoreSignatureBlob({
      mimeType: parsed.mimeType,
      payload: parsed.payload,
      annotations: {
        ...parsed.annotations,
        ...extraAnnotations,
        [sigstoreSetAnnotation]: JSON.stringify({
          SignedEntryTimestamp: timestamp.toString('base64'),
          Payload: payload,
        }),
      },
    });
  }

  it('accepts a signature whose SET verifies, and rejects a missing, foreign or mismatched SET', async () => {
    const rekor = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const otherRekor = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const rekorFile = join(directory, 'rekor.pub');
    await writeFile(rekorFile, rekor.publicKey.export({ format: 'pem', type: 'spki' }).toString());
    const policy = sigstorePolicy({ rekorPublicKeyPath: rekorFile });
    const signingKey = readSigstorePublicKey(await readFile(keyFile));
    const signature = sign(image.topLevel.bytes);
    await expect(
      evaluate(policy, [withSet(signature, signingKey, rekor.privateKey)]),
    ).resolves.toBeUndefined();
    await expect(evaluate(policy, [signature])).rejects.toThrow(
      'missing dev.sigstore.cosign/bundle annotation',
    );
    await expect(evaluate(policy, [withSet(signature, signingKey, otherRekor.privateKey)])).rejects.toThrow(
      'No public key verified against the RekorSET: cryptographic signature verification of Rekor SET failed',
    );
    const otherSigningKey = readSigstorePublicKey(await readFile(otherKeyFile));
    await expect(evaluate(policy, [withSet(signature, otherSigningKey, rekor.privateKey)])).rejects.toThrow(
      'publicKey in Rekor SET does not match',
    );
    await expect(
      evaluate(policy, [withSet(signature, signingKey, rekor.privateKey, new TextEncoder().encode('other'))]),
    ).rejects.toThrow('payload in Rekor SET does not match');
  });

  it('with fulcio or pki: accepts a certificate of the CA for the identity; rejects another email, issuer, host or CA', async () => {
    const work = join(directory, 'fulcio');
    await mkdir(work, { recursive: true });
    const openssl = (args: string[]) => execFileAsync('openssl', args, { cwd: work });
    const makeCa = async (name: string) => {
      await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
      await openssl([
        'req',
        '-x509',
        '-new',
        '-key',
        `${name}.key`,
        '-subj',
        `/CN=${name}`,
        '-days',
        '30',
        '-out',
        `${name}.pem`,
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign',
      ]);
    };
    await makeCa('ca');
    await makeCa('other-ca');
    const rekor = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const rekorFile = join(work, 'rekor.pub');
    await writeFile(rekorFile, rekor.publicKey.export({ format: 'pem', type: 'spki' }).toString());
    const makeLeaf = async (name: string, ca: string, email: string, issuer: string) => {
      await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
      await openssl(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${name}`, '-out', `${name}.csr`]);
      await writeFile(
        join(work, `${name}.cnf`),
        `extendedKeyUsage=codeSigning\nsubjectAltName=email:${email},DNS:build.example\n1.3.6.1.4.1.57264.1.8=ASN1:UTF8String:${issuer}\n`,
      );
      await openssl([
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        `${ca}.pem`,
        '-CAkey',
        `${ca}.key`,
        '-CAcreateserial',
        '-days',
        '1',
        '-out',
        `${name}.pem`,
        '-extfile',
        `${name}.cnf`,
      ]);
      const certificate = await readFile(join(work, `${name}.pem`), 'utf8');
      const key = createPrivateKey(await readFile(join(work, `${name}.key`)));
      const blob = sigstoreSignatureBlob(signSigstore(image.topLevel.bytes, identity, key));
      return withSet(blob, certificate, rekor.privateKey, undefined, {
        [sigstoreCertificateAnnotation]: certificate,
        [sigstoreChainAnnotation]: await readFile(join(work, `${ca}.pem`), 'utf8'),
      });
    };
    const policy = parsePolicy(
      JSON.stringify({
        default: [
          {
            type: 'sigstoreSigned',
            fulcio: {
              caPath: join(work, 'ca.pem'),
              oidcIssuer: 'https://issuer.example',
              subjectEmail: 'dev@example.com',
            },
            rekorPublicKeyPath: rekorFile,
          },
        ],
      }),
      'test',
    );
    await expect(
      evaluate(policy, [await makeLeaf('good', 'ca', 'dev@example.com', 'https://issuer.example')]),
    ).resolves.toBeUndefined();
    await expect(
      evaluate(policy, [await makeLeaf('email', 'ca', 'eve@example.com', 'https://issuer.example')]),
    ).rejects.toThrow('Required email "dev@example.com" not found (got ["eve@example.com"])');
    await expect(
      evaluate(policy, [await makeLeaf('issuer', 'ca', 'dev@example.com', 'https://evil.example')]),
    ).rejects.toThrow('Unexpected Fulcio OIDC issuer "https://evil.example"');
    await expect(
      evaluate(policy, [await makeLeaf('foreign', 'other-ca', 'dev@example.com', 'https://issuer.example')]),
    ).rejects.toThrow('certificate signed by unknown authority');
    await expect(evaluate(policy, [sign(image.topLevel.bytes)])).rejects.toThrow(
      'missing dev.sigstore.cosign/bundle annotation',
    );

    // pki: the same certificates checked against configured roots, now, without Rekor.
    const pki = (subject: Record<string, string>) =>
      parsePolicy(
        JSON.stringify({
          default: [{ type: 'sigstoreSigned', pki: { caRootsPath: join(work, 'ca.pem'), ...subject } }],
        }),
        'test',
      );
    const good = await makeLeaf('pki-good', 'ca', 'dev@example.com', 'https://issuer.example');
    await expect(evaluate(pki({ subjectEmail: 'dev@example.com' }), [good])).resolves.toBeUndefined();
    await expect(evaluate(pki({ subjectHostname: 'build.example' }), [good])).resolves.toBeUndefined();
    await expect(evaluate(pki({ subjectHostname: 'other.example' }), [good])).rejects.toThrow(
      'Unexpected subject hostname',
    );
    await expect(evaluate(pki({ subjectEmail: 'eve@example.com' }), [good])).rejects.toThrow(
      'Required email "eve@example.com"',
    );
    const foreign = await makeLeaf('pki-foreign', 'other-ca', 'dev@example.com', 'https://issuer.example');
    await expect(evaluate(pki({ subjectEmail: 'dev@example.com' }), [foreign])).rejects.toThrow(
      'certificate signed by unknown authority',
    );
    await expect(
      evaluate(pki({ subjectEmail: 'dev@example.com' }), [sign(image.topLevel.bytes)]),
    ).rejects.toThrow('missing dev.sigstore.cosign/certificate annotation');
  }, 120_000);

  it('canonicalises JSON as RFC 8785 does for the SET payload', () => {
    expect(
      canonicalJson({
        logIndex: 1,
        body: 'x',
        integratedTime: 2,
        logID: 'ab',
        nested: { b: [1, 'é'], a: null },
      }),
    ).toBe('{"body":"x","integratedTime":2,"logID":"ab","logIndex":1,"nested":{"a":null,"b":[1,"é"]}}');
  });
});

describe('signedBy', () => {
  it('accepts a GPG signature by the key; a key file that is not a key or is missing rejects', async () => {
    const signature = await signSimpleSigning(image.topLevel.bytes, identity, gpgKey.fingerprint, {
      env: { ...process.env, GNUPGHOME: gpgKey.home },
    });
    const policy = parsePolicy(
      JSON.stringify({ default: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: gpgKey.publicKeyPath }] }),
      'test',
    );
    await expect(evaluate(policy, [signature])).resolves.toBeUndefined();
    const junk = join(directory, 'junk.gpg');
    await writeFile(junk, 'not a key');
    const notAKey = parsePolicy(
      JSON.stringify({ default: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: junk }] }),
      'test',
    );
    await expect(evaluate(notAKey, [signature])).rejects.toThrow('No public keys imported');
    const missing = parsePolicy(
      JSON.stringify({
        default: [{ type: 'signedBy', keyType: 'GPGKeys', keyPath: join(directory, 'nope') }],
      }),
      'test',
    );
    await expect(evaluate(missing, [signature])).rejects.toThrow(
      `open ${join(directory, 'nope')}: no such file or directory`,
    );
  }, 60_000);
});

describe('signing on copy, then verifyImage', () => {
  it('signs the copied image, and the signature verifies; a wrong passphrase fails before anything is written', async () => {
    const destination = new RecordingDestination();
    const destinationReference = fakeReference({
      name: 'destination',
      dockerReference: fakeDockerReference('destination'),
      openDestination: () => destination,
    });
    const result = await copyImage(sourceReference(image, {}), destinationReference, {
      policy: parsePolicy('{"default":[{"type":"insecureAcceptAnything"}]}', 'test'),
      signing: { sigstorePrivateKey: privateKeyFile, sigstorePassphrase: passphraseText, identity },
    });
    expect(destination.signatures).toHaveLength(1);
    const [stored] = destination.signatures[0]!.signatures;
    const signedSource = sourceReference(image, { signatures: [stored!] });
    const verified = await verifyImage(signedSource, { policy: sigstorePolicy() });
    expect(verified.manifestDigest).toBe(result.manifestDigest);
    await expect(verifyImage(signedSource, { policy: sigstorePolicy({}, otherKeyFile) })).rejects.toThrow(
      /^Source image rejected: cryptographic signature verification failed/,
    );

    const untouched = new RecordingDestination();
    await expect(
      copyImage(
        sourceReference(image, {}),
        fakeReference({
          name: 'untouched',
          dockerReference: fakeDockerReference('untouched'),
          openDestination: () => untouched,
        }),
        {
          policy: parsePolicy('{"default":[{"type":"insecureAcceptAnything"}]}', 'test'),
          signing: { sigstorePrivateKey: privateKeyFile, sigstorePassphrase: 'wrong' },
        },
      ),
    ).rejects.toMatchObject({
      code: 'ERR_GANTRY_SIGNING_FAILED',
      message: expect.stringContaining('decryption failed'),
    });
    expect(untouched.committed).toBe(false);
    expect(untouched.manifests).toEqual([]);
  }, 60_000);

  it('with all instances, signs every instance and the list, and each verifies against its manifest', async () => {
    const destination = new RecordingDestination();
    await copyImage(
      sourceReference(list, {}),
      fakeReference({
        name: 'destination',
        dockerReference: parseNormalizedNamed(identity),
        openDestination: () => destination,
      }),
      {
        policy: parsePolicy('{"default":[{"type":"insecureAcceptAnything"}]}', 'test'),
        imageListSelection: 'all',
        signing: { sigstorePrivateKey: privateKeyFile, sigstorePassphrase: passphraseText },
      },
    );
    const instances = (JSON.parse(Buffer.from(list.topLevel.bytes).toString()) as { manifests: unknown[] })
      .manifests;
    expect(destination.signatures).toHaveLength(instances.length + 1);
    for (const { signatures, instanceDigest } of destination.signatures) {
      const manifest = destination.manifests.find((entry) => entry.instanceDigest === instanceDigest)!;
      expect(manifestDigest(manifest.bytes)).toBe(instanceDigest ?? list.topLevel.digest);
      await expect(
        evaluatePolicy(sigstorePolicy(), sourceReference(list, {}), {
          manifest: { bytes: manifest.bytes, mediaType: manifest.mediaType },
          signatures,
        }),
      ).resolves.toBeUndefined();
    }
  }, 60_000);

  it('evaluates a list per instance copied, as containers/image: every instance before any blob moves, the list itself only when no instance is copied', async () => {
    const instanceDigests = (
      JSON.parse(Buffer.from(list.topLevel.bytes).toString()) as { manifests: Array<{ digest: string }> }
    ).manifests.map((entry) => entry.digest as `sha256:${string}`);
    const instanceBytes = (digest: `sha256:${string}`) => list.manifests.get(digest)!.bytes;
    const everyInstanceSigned = new Map(
      instanceDigests.map((digest) => [digest, [sign(instanceBytes(digest))]]),
    );
    const copyList = async (
      signatures: FixtureSignatures,
      imageListSelection: 'all' | 'index-only',
    ): Promise<{ destination: RecordingDestination; result: Promise<unknown> }> => {
      const destination = new RecordingDestination();
      const result = copyImage(
        sourceReference(list, signatures),
        fakeReference({ name: 'destination', openDestination: () => destination }),
        { policy: sigstorePolicy(), imageListSelection },
      );
      await result.catch(() => undefined);
      return { destination, result };
    };

    // Instances signed, the list not: accepted (the list is not evaluated when instances are copied).
    const accepted = await copyList({ instanceSignatures: everyInstanceSigned }, 'all');
    await expect(accepted.result).resolves.toBeDefined();
    expect(accepted.destination.committed).toBe(true);

    // The list signed, the last instance not: rejected, naming the instance, before any blob is written.
    const lastUnsigned = new Map(everyInstanceSigned);
    lastUnsigned.delete(instanceDigests.at(-1)!);
    const rejected = await copyList(
      { signatures: [sign(list.topLevel.bytes)], instanceSignatures: lastUnsigned },
      'all',
    );
    await expect(rejected.result).rejects.toThrow(
      `copying image ${instanceDigests.length}/${instanceDigests.length} from manifest list: Source image rejected: A signature was required, but no signature exists`,
    );
    expect(rejected.destination.calls.filter((call) => call.startsWith('putBlob'))).toEqual([]);

    // Only the list copied: the list is evaluated (containers/image evaluates nothing there).
    const indexOnlyUnsigned = await copyList({ instanceSignatures: everyInstanceSigned }, 'index-only');
    await expect(indexOnlyUnsigned.result).rejects.toThrow(
      'Source image rejected: A signature was required, but no signature exists',
    );
    const indexOnlySigned = await copyList({ signatures: [sign(list.topLevel.bytes)] }, 'index-only');
    await expect(indexOnlySigned.result).resolves.toBeDefined();
  }, 60_000);

  it("rejects a policy failure on copy with skopeo's prefix and copies nothing", async () => {
    const destination = new RecordingDestination();
    await expect(
      copyImage(
        sourceReference(image, {}),
        fakeReference({ name: 'destination', openDestination: () => destination }),
        { policy: sigstorePolicy() },
      ),
    ).rejects.toThrow('Source image rejected: A signature was required, but no signature exists');
    expect(destination.committedBlobs.size).toBe(0);
  });
});
