/**
 * Simple signing (containers-signature(5), "atomic container signatures"): an OpenPGP signed message
 * whose content is the payload JSON (see payload.ts). Verified with OpenPGP.js, loaded only when a
 * signature is verified; made by the user's `gpg` program (GnuPG keyring, `GNUPGHOME`), as skopeo
 * makes them through gpgme.
 */
import { spawn } from 'node:child_process';
import type { Key } from 'openpgp';
import { ErrorCodes, GantryError } from '../errors.js';
import { manifestDigest } from '../manifest/index.js';
import { createPayload, parsePayload, simpleSigningType, type UntrustedPayload } from './payload.js';

type OpenPgp = typeof import('openpgp');
let openPgpModule: Promise<OpenPgp> | undefined;

/**
 * OpenPGP.js, imported on first use (it is large; most commands never verify a signature). The
 * package's minified Node build (`dist/node/openpgp.min.mjs`, beside the entry point its `exports`
 * name) is loaded when present: the same code, about a third less for Node to parse (≈ 50 ms of CPU).
 */
function openPgp(): Promise<OpenPgp> {
  openPgpModule ??= (async () => {
    try {
      const entry = import.meta.resolve('openpgp');
      if (entry.endsWith('/openpgp.mjs')) {
        return (await import(entry.replace(/openpgp\.mjs$/, 'openpgp.min.mjs'))) as OpenPgp;
      }
    } catch {
      // No resolver or no minified build: the entry point below.
    }
    return import('openpgp');
  })();
  return openPgpModule;
}

/**
 * Starts importing OpenPGP.js in the background (its parsing takes a while), so that a verification
 * coming soon finds it loaded. Failures are left for the verification to report.
 */
export function preloadOpenPgp(): void {
  openPgp().catch(() => undefined);
}

/** Public keys for verifying simple-signing signatures. */
export interface GpgPublicKeys {
  /** The keys read, each with its (primary key) fingerprint, upper-case hexadecimal. */
  readonly keys: readonly Key[];
  readonly fingerprints: readonly string[];
}

function looksArmored(bytes: Uint8Array): boolean {
  return Buffer.from(bytes.subarray(0, 4096)).toString('latin1').includes('-----BEGIN PGP');
}

/**
 * Reads OpenPGP public keys from key files' contents (ASCII-armored or binary, one or more keys
 * each). Like gpg importing them, data that holds no key contributes nothing: a caller finding no
 * fingerprints reports "No public keys imported".
 */
export async function readGpgPublicKeys(blobs: readonly Uint8Array[]): Promise<GpgPublicKeys> {
  const openpgp = await openPgp();
  const keys: Key[] = [];
  for (const blob of blobs) {
    try {
      const read = looksArmored(blob)
        ? await openpgp.readKeys({ armoredKeys: Buffer.from(blob).toString('utf8') })
        : await openpgp.readKeys({ binaryKeys: blob });
      keys.push(...read.map((key) => (key.isPrivate() ? key.toPublic() : key)));
    } catch {
      // Not a key: nothing imported from this blob.
    }
  }
  return { keys, fingerprints: keys.map((key) => key.getFingerprint().toUpperCase()) };
}

function invalidSignature(message: string): GantryError {
  return new GantryError(ErrorCodes.InvalidSignature, message);
}

/**
 * Checks the OpenPGP signature of a simple-signing signature with `publicKeys` and returns the signed
 * content and the fingerprint of the (primary) key that made it. Throws `ERR_GANTRY_INVALID_SIGNATURE`
 * ("Invalid GPG signature: …") when the message is malformed, has not exactly one signature, or its
 * signature is not by one of the keys or does not verify.
 */
export async function verifyGpgSignature(
  signature: Uint8Array,
  publicKeys: GpgPublicKeys,
): Promise<{ content: Uint8Array; keyFingerprint: string }> {
  const openpgp = await openPgp();
  let message: Awaited<ReturnType<OpenPgp['readMessage']>>;
  try {
    message = await openpgp.readMessage({ binaryMessage: signature });
  } catch (error) {
    throw invalidSignature(`Invalid GPG signature: ${(error as Error).message}`);
  }
  let result: Awaited<ReturnType<OpenPgp['verify']>>;
  try {
    result = await openpgp.verify({
      message,
      verificationKeys: [...publicKeys.keys],
      format: 'binary',
    });
  } catch (error) {
    throw invalidSignature(`Invalid GPG signature: ${(error as Error).message}`);
  }
  if (result.signatures.length !== 1) {
    throw invalidSignature(`Unexpected GPG signature count ${result.signatures.length}`);
  }
  const [only] = result.signatures;
  const keyId = only!.keyID.toHex().toUpperCase();
  try {
    await only!.verified;
  } catch (error) {
    throw invalidSignature(`Invalid GPG signature by key ${keyId}: ${(error as Error).message}`);
  }
  const signer = publicKeys.keys.find((key) => key.getKeys(only!.keyID).length > 0);
  if (!signer) throw invalidSignature(`Invalid GPG signature: no public key ${keyId}`);
  return {
    content: result.data as Uint8Array,
    keyFingerprint: signer.getFingerprint().toUpperCase(),
  };
}

/** What a verified simple-signing signature says. */
export interface VerifiedSignature {
  dockerManifestDigest: string;
  dockerReference: string;
  keyFingerprint: string;
}

/** Checks made on a signature's claims, in containers/image's order (digest, then identity). */
export interface SignatureAcceptanceRules {
  /** Throws when the key that signed is not accepted. */
  validateKeyFingerprint(fingerprint: string): void;
  /** Throws when the signed manifest digest does not match the image. */
  validateManifestDigest(digest: string): void;
  /** Throws when the signed identity is not accepted. */
  validateDockerReference(reference: string): void;
}

/** Verifies a simple-signing signature and its payload against `rules`. */
export async function verifySimpleSigningSignature(
  signature: Uint8Array,
  publicKeys: GpgPublicKeys,
  rules: SignatureAcceptanceRules,
): Promise<VerifiedSignature> {
  const { content, keyFingerprint } = await verifyGpgSignature(signature, publicKeys);
  rules.validateKeyFingerprint(keyFingerprint);
  const payload = parsePayload(content, simpleSigningType);
  rules.validateManifestDigest(payload.dockerManifestDigest);
  rules.validateDockerReference(payload.dockerReference);
  return {
    dockerManifestDigest: payload.dockerManifestDigest,
    dockerReference: payload.dockerReference,
    keyFingerprint,
  };
}

/** What a signature claims and who (by short key ID) claims it, read WITHOUT verifying anything. */
export interface UntrustedSignatureInformation extends UntrustedPayload {
  /** The 16-digit key ID of the signing key, upper case. */
  shortKeyIdentifier: string;
}

/**
 * Reads a simple-signing signature's content without checking the signature: never use the result
 * for a security decision. Throws `ERR_GANTRY_INVALID_SIGNATURE` when it is not a signed message.
 */
export async function readUntrustedSimpleSigningSignature(
  signature: Uint8Array,
): Promise<UntrustedSignatureInformation> {
  const openpgp = await openPgp();
  let content: Uint8Array;
  let keyId: string;
  try {
    const message = (await openpgp.readMessage({ binaryMessage: signature })).unwrapCompressed();
    const signingKeyIds = message.getSigningKeyIDs();
    if (signingKeyIds.length === 0) throw new Error('The input is not a signature');
    keyId = signingKeyIds[0]!.toHex().toUpperCase();
    const literal = message.getLiteralData();
    if (literal === null) throw new Error('The input is not a signature');
    content = literal as Uint8Array;
  } catch (error) {
    throw invalidSignature((error as Error).message);
  }
  return { ...parsePayload(content, simpleSigningType), shortKeyIdentifier: keyId };
}

/** How `gpg` is run for signing. */
export interface GpgSigningOptions {
  /** The environment of `gpg` (its `GNUPGHOME`, `HOME`); default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** The key's passphrase, when it has one (given to gpg in loopback pinentry mode). */
  passphrase?: string;
  /** The gpg program; default `gpg`. */
  gpgProgram?: string;
  signal?: AbortSignal;
}

/**
 * Makes an OpenPGP signed message of `content` with the secret key `keyIdentity` (a fingerprint,
 * key ID or user ID gpg accepts) from the user's GnuPG keyring. Throws `ERR_GANTRY_SIGNING_FAILED`
 * naming gpg's complaint.
 */
export function gpgSign(
  content: Uint8Array,
  keyIdentity: string,
  options: GpgSigningOptions = {},
): Promise<Uint8Array> {
  const args = ['--batch', '--no-tty', '--sign', '--local-user', keyIdentity, '--output', '-'];
  const passphrase = options.passphrase;
  if (passphrase !== undefined && passphrase !== '') {
    args.unshift('--pinentry-mode', 'loopback', '--passphrase-fd', '3');
  }
  return new Promise((resolve, reject) => {
    const child = spawn(options.gpgProgram ?? 'gpg', args, {
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const output: Buffer[] = [];
    const errors: Buffer[] = [];
    child.stdout!.on('data', (chunk: Buffer) => output.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => errors.push(chunk));
    child.on('error', (error) => {
      const missing = (error as NodeJS.ErrnoException).code === 'ENOENT' ? ' (is GnuPG installed?)' : '';
      reject(
        new GantryError(ErrorCodes.SigningFailed, `running gpg${missing}: ${error.message}`, {
          cause: error,
        }),
      );
    });
    child.on('close', (code) => {
      const bytes = Buffer.concat(output);
      if (code === 0 && bytes.byteLength > 0) {
        resolve(new Uint8Array(bytes));
        return;
      }
      const stderr = Buffer.concat(errors).toString('utf8').trim();
      reject(
        new GantryError(
          ErrorCodes.SigningFailed,
          `signing with GPG key ${keyIdentity} failed (gpg exit code ${code}): ${stderr || 'no output'}`,
        ),
      );
    });
    const passphraseStream = child.stdio[3] as NodeJS.WritableStream | null;
    if (passphraseStream) {
      passphraseStream.on('error', () => undefined);
      passphraseStream.end(passphrase !== undefined && passphrase !== '' ? `${passphrase}\n` : '');
    }
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(Buffer.from(content));
  });
}

/** A simple-signing signature's creator, as skopeo writes "atomic <version>". */
export const simpleSigningCreator = 'atomic gantry';

/**
 * Signs `manifest` for `dockerReference` (a full reference string) with a GPG key: the payload names
 * the manifest's digest, the reference, the creator and the time. Returns the OpenPGP message (the
 * storage form of a simple-signing signature).
 */
export async function signSimpleSigning(
  manifest: Uint8Array,
  dockerReference: string,
  keyIdentity: string,
  options: GpgSigningOptions = {},
): Promise<Uint8Array> {
  const payload = createPayload(simpleSigningType, {
    dockerManifestDigest: manifestDigest(manifest),
    dockerReference,
    creator: simpleSigningCreator,
    timestamp: Math.floor(Date.now() / 1000),
  });
  return gpgSign(payload, keyIdentity, options);
}
