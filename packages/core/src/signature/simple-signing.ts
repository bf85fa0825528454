/**
 * Simple signing (containers-signature(5), "atomic container signatures"): an OpenPGP signed message
 * whose content is the payload JSON (see payload.ts). Verified with node:crypto for the keys and
 * signatures gpg makes (openpgp-native.ts), with OpenPGP.js (loaded only then) for the rest; made by the user's `gpg` program (GnuPG keyring, `GNUPGHOME`), as skopeo
 * makes them through gpgme.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import type { Key } from 'openpgp';
import { ErrorCodes, GantryError } from '../errors.js';
import { manifestDigest } from '../manifest/index.js';
import {
  dearmor,
  InvalidOpenPgp,
  type NativeKey,
  readNativeKeys,
  readSignedMessageUnverified,
  UnsupportedOpenPgp,
  verifyNativeSignedMessage,
} from './openpgp-native.js';
import { createPayload, parsePayload, simpleSigningType, type UntrustedPayload } from './payload.js';

type OpenPgp = typeof import('openpgp');
let openPgpModule: Promise<OpenPgp> | undefined;

/**
 * OpenPGP.js, loaded on first use (it is large, and only keys and signatures node:crypto cannot check
 * need it). Loaded with `require`, which OpenPGP.js's package exports map to its minified CommonJS
 * build (`dist/node/openpgp.min.cjs`: the same code, about a third less for Node to parse); the CLI's
 * bundle holds that same build (scripts/bundle-package.mjs).
 */
function openPgp(): Promise<OpenPgp> {
  openPgpModule ??= new Promise((resolve) => {
    resolve(createRequire(import.meta.url)('openpgp') as OpenPgp);
  });
  return openPgpModule;
}

/**
 * Starts loading OpenPGP.js in the background, for a caller about to verify signatures it knows need
 * it. Failures are left for the verification to report. Policy evaluation does not call it: the keys
 * and signatures gpg makes are checked without OpenPGP.js.
 */
export function preloadOpenPgp(): void {
  openPgp().catch(() => undefined);
}

/**
 * Public keys for verifying simple-signing signatures. Keys node:crypto can check (see
 * openpgp-native.ts) are read without OpenPGP.js; OpenPGP.js is loaded only for other keys and for
 * signatures the native reader cannot check.
 */
export interface GpgPublicKeys {
  /** The (primary key) fingerprint of each key read, upper-case hexadecimal. */
  readonly fingerprints: readonly string[];
}

interface KeyringState {
  /** Keys read natively. */
  native: NativeKey[];
  /** Key data only OpenPGP.js can read, with the keys it read. */
  openPgpKeys: Key[];
  /** Every key blob (binary), for OpenPGP.js when a signature needs it. */
  blobs: Uint8Array[];
  /** Every key as OpenPGP.js reads it, when needed. */
  allOpenPgpKeys?: Promise<Key[]>;
}

const keyrings = new WeakMap<GpgPublicKeys, KeyringState>();

async function readOpenPgpKeys(openpgp: OpenPgp, blob: Uint8Array): Promise<Key[]> {
  try {
    const read = await openpgp.readKeys({ binaryKeys: blob });
    return read.map((key) => (key.isPrivate() ? key.toPublic() : key));
  } catch {
    // Not a key: nothing imported from this blob.
    return [];
  }
}

/**
 * Reads OpenPGP public keys from key files' contents (ASCII-armored or binary, one or more keys
 * each). Like gpg importing them, data that holds no key contributes nothing: a caller finding no
 * fingerprints reports "No public keys imported".
 */
export async function readGpgPublicKeys(blobs: readonly Uint8Array[]): Promise<GpgPublicKeys> {
  const state: KeyringState = { native: [], openPgpKeys: [], blobs: [] };
  const fingerprints: string[] = [];
  for (const blob of blobs) {
    let parts: Uint8Array[];
    try {
      parts = dearmor(blob);
    } catch {
      continue;
    }
    for (const part of parts) {
      state.blobs.push(part);
      try {
        const keys = readNativeKeys(part);
        state.native.push(...keys);
        fingerprints.push(...keys.map((key) => key.primary.fingerprint));
        continue;
      } catch (error) {
        if (!(error instanceof UnsupportedOpenPgp)) continue;
      }
      const keys = await readOpenPgpKeys(await openPgp(), part);
      state.openPgpKeys.push(...keys);
      fingerprints.push(...keys.map((key) => key.getFingerprint().toUpperCase()));
    }
  }
  const publicKeys: GpgPublicKeys = { fingerprints };
  keyrings.set(publicKeys, state);
  return publicKeys;
}

function invalidSignature(message: string): GantryError {
  return new GantryError(ErrorCodes.InvalidSignature, message);
}

/**
 * Checks the OpenPGP signature of a simple-signing signature with `publicKeys` and returns the signed
 * content and the fingerprint of the (primary) key that made it. Throws `ERR_GANTRY_INVALID_SIGNATURE`
 * ("Invalid GPG signature: …") when the message is malformed, has not exactly one signature, or its
 * signature is not by one of the keys, does not verify, or its key is expired, revoked or not for
 * signing. Checked with node:crypto where it can (see openpgp-native.ts), else with OpenPGP.js.
 */
export async function verifyGpgSignature(
  signature: Uint8Array,
  publicKeys: GpgPublicKeys,
): Promise<{ content: Uint8Array; keyFingerprint: string }> {
  const state = keyrings.get(publicKeys);
  if (state === undefined)
    throw new GantryError(ErrorCodes.Internal, 'public keys not read by readGpgPublicKeys');
  if (state.openPgpKeys.length === 0) {
    try {
      return verifyNativeSignedMessage(signature, state.native);
    } catch (error) {
      if (error instanceof InvalidOpenPgp) {
        const message = error.message;
        throw invalidSignature(
          /^(Invalid GPG signature|Unexpected GPG signature count)/.test(message)
            ? message
            : `Invalid GPG signature: ${message}`,
        );
      }
      if (!(error instanceof UnsupportedOpenPgp)) throw error;
    }
  }
  const openpgp = await openPgp();
  state.allOpenPgpKeys ??= (async () =>
    (await Promise.all(state.blobs.map((blob) => readOpenPgpKeys(openpgp, blob)))).flat())();
  return verifyWithOpenPgp(openpgp, signature, await state.allOpenPgpKeys);
}

async function verifyWithOpenPgp(
  openpgp: OpenPgp,
  signature: Uint8Array,
  keys: readonly Key[],
): Promise<{ content: Uint8Array; keyFingerprint: string }> {
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
      verificationKeys: [...keys],
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
  const signer = keys.find((key) => key.getKeys(only!.keyID).length > 0);
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
  let content: Uint8Array;
  let keyId: string;
  try {
    const read = readSignedMessageUnverified(signature);
    content = read.content;
    keyId = read.keyIds[0]!;
  } catch (error) {
    if (error instanceof InvalidOpenPgp) throw invalidSignature(error.message);
    if (!(error instanceof UnsupportedOpenPgp)) throw error;
    const openpgp = await openPgp();
    try {
      const message = (await openpgp.readMessage({ binaryMessage: signature })).unwrapCompressed();
      const signingKeyIds = message.getSigningKeyIDs();
      if (signingKeyIds.length === 0) throw new Error('The input is not a signature');
      keyId = signingKeyIds[0]!.toHex().toUpperCase();
      const literal = message.getLiteralData();
      if (literal === null) throw new Error('The input is not a signature');
      content = literal as Uint8Array;
    } catch (inner) {
      throw invalidSignature((inner as Error).message);
    }
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
