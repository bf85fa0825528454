/**
 * Test support for image signatures with the real tools: a GPG key in a private `GNUPGHOME`
 * (`gpg`), sigstore keys and signatures (Node's crypto), skopeo runs with an environment, and
 * containers-registries.d / policy.json files. Tools that are missing fail loudly (never skip).
 */
import { execFile } from 'node:child_process';
import { createSign, createVerify, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Runs a program; fails naming the program, the arguments and its stderr. */
export async function runTool(
  program: string,
  args: string[],
  environment: Record<string, string> = {},
): Promise<{ stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(program, args, {
      env: { ...process.env, ...environment },
      maxBuffer: 64 * 1024 * 1024,
    });
    return { stdout, stderr };
  } catch (error) {
    const failure = error as { stderr?: string; code?: unknown };
    const missing = failure.code === 'ENOENT' ? ` (${program} must be installed)` : '';
    throw new Error(
      `${program} ${args.join(' ')} failed${missing}: ${failure.stderr || (error as Error).message}`,
    );
  }
}

/** Runs `/usr/bin/skopeo` with `args` and extra environment variables. */
export function runSkopeo(args: string[], environment: Record<string, string> = {}) {
  return runTool('/usr/bin/skopeo', args, environment);
}

export { createTestGpgKey, type TestGpgKey } from '@gantry/core/testing';

/** An ECDSA P-256 key pair for sigstore signatures, and its public key file (a policy's `keyPath`). */
export interface SigstoreTestKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicKeyPath: string;
}

/** Creates a sigstore (cosign) signing key pair and writes the public key PEM to `directory`. */
export async function createTestSigstoreKey(directory: string): Promise<SigstoreTestKey> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicKeyPath = path.join(directory, 'sigstore.pub');
  await writeFile(publicKeyPath, publicKey.export({ format: 'pem', type: 'spki' }).toString());
  return { privateKey, publicKey, publicKeyPath };
}

/**
 * A sigstore signature of a manifest, as `cosign sign` / containers/image's sigstore signer make
 * it, in containers/image's storage form (`\0sigstore-json\n{mimeType, payload, annotations}`): the
 * payload is the cosign simple-signing JSON naming `dockerReference` and `manifestDigest`; the
 * `dev.cosignproject.cosign/signature` annotation is the base64 ECDSA-SHA256 signature of the payload.
 * Debian's skopeo is built with sigstore signing and verification disabled, so tests make their
 * sigstore signatures with this and check them with `verifySigstoreTestSignature`.
 */
export function createSigstoreTestSignature(
  key: SigstoreTestKey,
  manifestDigest: string,
  dockerReference: string,
): Uint8Array {
  const payload = Buffer.from(
    JSON.stringify({
      critical: {
        identity: { 'docker-reference': dockerReference },
        image: { 'docker-manifest-digest': manifestDigest },
        type: 'cosign container image signature',
      },
      optional: { creator: 'gantry tests' },
    }),
  );
  const signature = createSign('sha256').update(payload).sign(key.privateKey).toString('base64');
  const json = JSON.stringify({
    mimeType: 'application/vnd.dev.cosign.simplesigning.v1+json',
    payload: payload.toString('base64'),
    annotations: { 'dev.cosignproject.cosign/signature': signature },
  });
  return new Uint8Array(Buffer.concat([Buffer.from('\0sigstore-json\n'), Buffer.from(json)]));
}

/**
 * Checks a sigstore signature in storage form against `key`: the ECDSA signature of the payload, and
 * that the payload names `manifestDigest`. Throws when it does not hold.
 */
export function verifySigstoreTestSignature(
  key: SigstoreTestKey,
  blob: Uint8Array,
  manifestDigest: string,
): void {
  const text = Buffer.from(blob).toString('utf8');
  const prefix = '\0sigstore-json\n';
  if (!text.startsWith(prefix)) throw new Error('not a sigstore signature');
  const record = JSON.parse(text.slice(prefix.length)) as {
    payload: string;
    annotations: Record<string, string>;
  };
  const payload = Buffer.from(record.payload, 'base64');
  const signature = Buffer.from(record.annotations['dev.cosignproject.cosign/signature'] ?? '', 'base64');
  if (!createVerify('sha256').update(payload).verify(key.publicKey, signature)) {
    throw new Error('the sigstore signature does not verify with the key');
  }
  const claimed = JSON.parse(payload.toString()).critical?.image?.['docker-manifest-digest'];
  if (claimed !== manifestDigest) throw new Error(`the signature signs ${claimed}, not ${manifestDigest}`);
}

/** One scope's section of a registries.d file. */
export interface TestRegistriesDirectorySection {
  lookaside?: string;
  lookasideStaging?: string;
  useSigstoreAttachments?: boolean;
}

/** Writes `directory/config.yaml` with a `docker:` section per scope; returns `directory`. */
export async function writeRegistriesDirectory(
  directory: string,
  scopes: Record<string, TestRegistriesDirectorySection>,
): Promise<string> {
  await mkdir(directory, { recursive: true });
  const lines = ['docker:'];
  for (const [scope, section] of Object.entries(scopes)) {
    lines.push(`  "${scope}":`);
    if (section.lookaside !== undefined) lines.push(`    lookaside: ${section.lookaside}`);
    if (section.lookasideStaging !== undefined)
      lines.push(`    lookaside-staging: ${section.lookasideStaging}`);
    if (section.useSigstoreAttachments !== undefined) {
      lines.push(`    use-sigstore-attachments: ${section.useSigstoreAttachments}`);
    }
  }
  await writeFile(path.join(directory, 'config.yaml'), `${lines.join('\n')}\n`);
  return directory;
}

/** `file://` URL of a directory. */
export function fileUrl(directory: string): string {
  return pathToFileURL(directory).href;
}

/**
 * Writes a policy.json rejecting everything except, for `transport` and `scope`, images signed as
 * `requirement` says (a `signedBy` or `sigstoreSigned` requirement object). Returns its path.
 */
export async function writeRequirementPolicy(
  file: string,
  transport: string,
  scope: string,
  requirement: Record<string, unknown>,
): Promise<string> {
  const policy = { default: [{ type: 'reject' }], transports: { [transport]: { [scope]: [requirement] } } };
  await writeFile(file, JSON.stringify(policy, null, 2));
  return file;
}
