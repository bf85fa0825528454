/**
 * Sigstore (cosign) image signatures: the payload is the cosign simple-signing JSON (payload.ts), its
 * signature (ECDSA P-256 with SHA-256 for cosign keys; RSA PKCS#1 v1.5 and Ed25519 keys are accepted
 * too) is the base64 `dev.cosignproject.cosign/signature` annotation. Private keys are cosign's
 * encrypted key files: a PEM block `ENCRYPTED COSIGN PRIVATE KEY` (or `… SIGSTORE …`) holding JSON
 * `{kdf: scrypt(N, r, p, salt), cipher: nacl/secretbox(nonce), ciphertext}` around a PKCS#8 key.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  scrypt,
  sign as signBytes,
  verify as verifyBytes,
} from 'node:crypto';
import { ErrorCodes, GantryError } from '../errors.js';
import { manifestDigest } from '../manifest/index.js';
import { createPayload, parsePayload, sigstoreType, type UntrustedPayload } from './payload.js';
import type { SignatureAcceptanceRules } from './simple-signing.js';
import { type SigstoreSignature, sigstoreSignatureAnnotation, sigstoreSignatureMimeType } from './stored.js';

/** The PEM type cosign (and containers/image) write encrypted private keys with. */
export const cosignPrivateKeyPemType = 'ENCRYPTED COSIGN PRIVATE KEY';
/** The PEM type newer cosign writes encrypted private keys with. */
export const sigstorePrivateKeyPemType = 'ENCRYPTED SIGSTORE PRIVATE KEY';

function signingFailed(message: string, cause?: unknown): GantryError {
  return new GantryError(ErrorCodes.SigningFailed, message, cause === undefined ? {} : { cause });
}

/** Reads one PEM block: its type and its bytes. */
function decodePem(text: string): { type: string; bytes: Buffer } | undefined {
  const match = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/.exec(text);
  if (!match) return undefined;
  const body = match[2]!
    .split(/\r?\n/)
    .filter((line) => line !== '' && !line.includes(':'))
    .join('');
  return { type: match[1]!, bytes: Buffer.from(body, 'base64') };
}

function encodePem(type: string, bytes: Uint8Array): string {
  const base64 = Buffer.from(bytes).toString('base64');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${type}-----\n${lines.join('\n')}\n-----END ${type}-----\n`;
}

/**
 * Reads a sigstore public key (PEM `PUBLIC KEY`, as `cosign.pub`). Throws `ERR_GANTRY_SIGNING_FAILED`
 * "parsing public key: …" when the data is not one.
 */
export function readSigstorePublicKey(pem: Uint8Array): KeyObject {
  const block = decodePem(Buffer.from(pem).toString('utf8'));
  if (block?.type !== 'PUBLIC KEY') {
    throw signingFailed('parsing public key: PEM decoding failed');
  }
  try {
    return createPublicKey({ key: block.bytes, format: 'der', type: 'spki' });
  } catch (error) {
    throw signingFailed(`parsing public key: ${(error as Error).message}`, error);
  }
}

/** The ECDSA / RSA / Ed25519 signature of `payload` by `key` holds. */
function signatureHolds(key: KeyObject, payload: Uint8Array, signature: Uint8Array): boolean {
  try {
    const algorithm = key.asymmetricKeyType === 'ed25519' ? null : 'sha256';
    return verifyBytes(algorithm, payload, key, signature);
  } catch {
    return false;
  }
}

/**
 * Verifies a sigstore signature with public keys (any one suffices) and its payload against `rules`
 * (digest, then identity). Throws `ERR_GANTRY_INVALID_SIGNATURE` for a missing or malformed
 * signature annotation, a signature no key verifies, or a malformed payload.
 */
export function verifySigstoreSignature(
  signature: SigstoreSignature,
  publicKeys: readonly KeyObject[],
  rules: Omit<SignatureAcceptanceRules, 'validateKeyFingerprint'>,
): UntrustedPayload {
  const annotation = signature.annotations[sigstoreSignatureAnnotation];
  if (annotation === undefined) {
    throw new GantryError(ErrorCodes.InvalidSignature, `missing ${sigstoreSignatureAnnotation} annotation`);
  }
  // Go's base64 decoder skips line breaks (cosign writes RSA signatures with them).
  const base64 = annotation.replace(/[\r\n]/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(base64) || base64.length % 4 !== 0) {
    throw new GantryError(ErrorCodes.InvalidSignature, 'base64 decoding: illegal base64 data');
  }
  const bytes = Buffer.from(base64, 'base64');
  if (publicKeys.length === 0) {
    throw new GantryError(
      ErrorCodes.InvalidSignature,
      'Need at least one public key to verify the sigstore payload, but got 0',
    );
  }
  if (!publicKeys.some((key) => signatureHolds(key, signature.payload, bytes))) {
    throw new GantryError(
      ErrorCodes.InvalidSignature,
      'cryptographic signature verification failed: invalid signature when validating ASN.1 encoded signature',
    );
  }
  const payload = parsePayload(signature.payload, sigstoreType);
  rules.validateManifestDigest(payload.dockerManifestDigest);
  rules.validateDockerReference(payload.dockerReference);
  return payload;
}

/** The scrypt parameters cosign uses for its key files. */
const scryptParameters = { N: 32768, r: 8, p: 1 };

/** The nacl secretbox cipher, imported on first use (start-up time). */
async function secretbox(key: Uint8Array, nonce: Uint8Array) {
  const { xsalsa20poly1305 } = await import('@noble/ciphers/salsa.js');
  return xsalsa20poly1305(key, nonce);
}

function deriveKey(
  passphrase: Uint8Array,
  salt: Uint8Array,
  parameters: typeof scryptParameters,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      passphrase,
      salt,
      32,
      {
        N: parameters.N,
        r: parameters.r,
        p: parameters.p,
        maxmem: 256 * parameters.N * parameters.r + 1024 * 1024,
      },
      (error, key) => (error ? reject(error) : resolve(key)),
    );
  });
}

interface EncryptedKeyFile {
  kdf: { name: string; params: { N: number; r: number; p: number }; salt: string };
  cipher: { name: string; nonce: string };
  ciphertext: string;
}

/**
 * Decrypts a cosign private key file with its passphrase. Throws `ERR_GANTRY_SIGNING_FAILED`:
 * "invalid pem block", "unsupported pem type: …", "decrypt: encrypted: decryption failed" (a wrong
 * passphrase), "parsing private key: …".
 */
export async function readSigstorePrivateKey(pem: Uint8Array, passphrase: Uint8Array): Promise<KeyObject> {
  const block = decodePem(Buffer.from(pem).toString('utf8'));
  if (!block) throw signingFailed('invalid pem block');
  if (block.type !== cosignPrivateKeyPemType && block.type !== sigstorePrivateKeyPemType) {
    throw signingFailed(`unsupported pem type: ${block.type}`);
  }
  let file: EncryptedKeyFile;
  try {
    file = JSON.parse(block.bytes.toString('utf8')) as EncryptedKeyFile;
  } catch (error) {
    throw signingFailed(`decrypt: ${(error as Error).message}`, error);
  }
  if (file?.kdf?.name !== 'scrypt') throw signingFailed('decrypt: encrypted: unknown kdf name');
  if (file.cipher?.name !== 'nacl/secretbox') throw signingFailed('decrypt: encrypted: unknown cipher name');
  const { N, r, p } = file.kdf.params ?? {};
  if (
    ![N, r, p].every((value) => Number.isInteger(value) && value! > 0) ||
    N! > 1 << 20 ||
    r! > 64 ||
    p! > 16
  ) {
    throw signingFailed('decrypt: encrypted: invalid scrypt parameters');
  }
  const salt = Buffer.from(file.kdf.salt ?? '', 'base64');
  const nonce = Buffer.from(file.cipher.nonce ?? '', 'base64');
  if (nonce.byteLength !== 24) throw signingFailed('decrypt: encrypted: invalid nonce');
  const key = await deriveKey(passphrase, salt, { N: N!, r: r!, p: p! });
  const cipher = await secretbox(key, nonce);
  let der: Uint8Array;
  try {
    der = cipher.decrypt(Buffer.from(file.ciphertext ?? '', 'base64'));
  } catch (error) {
    throw signingFailed('decrypt: encrypted: decryption failed (wrong passphrase?)', error);
  }
  try {
    return createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
  } catch (error) {
    throw signingFailed(`parsing private key: ${(error as Error).message}`, error);
  }
}

/** A new sigstore key pair: the encrypted private key file and the public key file, both PEM. */
export interface SigstoreKeyPair {
  privateKey: string;
  publicKey: string;
}

/**
 * Generates an ECDSA P-256 key pair as cosign (and skopeo's generate-sigstore-key) writes it: the
 * PKCS#8 private key encrypted with `passphrase` (scrypt N=32768 r=8 p=1, nacl secretbox) in an
 * `ENCRYPTED COSIGN PRIVATE KEY` PEM block, and the public key as a PEM `PUBLIC KEY`.
 */
export async function generateSigstoreKeyPair(passphrase: Uint8Array): Promise<SigstoreKeyPair> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  const salt = randomBytes(32);
  const nonce = randomBytes(24);
  const key = await deriveKey(passphrase, salt, scryptParameters);
  const ciphertext = (await secretbox(key, nonce)).encrypt(der);
  const file: EncryptedKeyFile = {
    kdf: { name: 'scrypt', params: scryptParameters, salt: salt.toString('base64') },
    cipher: { name: 'nacl/secretbox', nonce: nonce.toString('base64') },
    ciphertext: Buffer.from(ciphertext).toString('base64'),
  };
  return {
    privateKey: encodePem(cosignPrivateKeyPemType, Buffer.from(JSON.stringify(file))),
    publicKey: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

/** A sigstore signature's creator, as containers/image writes "containers/image <version>". */
export const sigstoreCreator = 'gantry';

/**
 * Signs `manifest` for `dockerReference` with a sigstore private key: the cosign payload (digest,
 * reference, creator, time) and its signature annotation.
 */
export function signSigstore(
  manifest: Uint8Array,
  dockerReference: string,
  privateKey: KeyObject,
): Omit<SigstoreSignature, 'format'> {
  const payload = createPayload(sigstoreType, {
    dockerManifestDigest: manifestDigest(manifest),
    dockerReference,
    creator: sigstoreCreator,
    timestamp: Math.floor(Date.now() / 1000),
  });
  const algorithm = privateKey.asymmetricKeyType === 'ed25519' ? null : 'sha256';
  const signature = signBytes(algorithm, payload, privateKey);
  return {
    mimeType: sigstoreSignatureMimeType,
    payload,
    annotations: { [sigstoreSignatureAnnotation]: signature.toString('base64') },
  };
}
