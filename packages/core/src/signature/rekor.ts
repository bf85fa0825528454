/**
 * Offline verification of a Rekor signed entry timestamp (SET), the `dev.sigstore.cosign/bundle`
 * annotation of a sigstore signature, as containers/image verifies it for a `sigstoreSigned`
 * requirement with `rekorPublicKey…`: the SET is `{"SignedEntryTimestamp": <base64 ECDSA signature>,
 * "Payload": {"body", "integratedTime", "logIndex", "logID"}}`, signed (over the RFC 8785 canonical
 * JSON of `Payload`) by a Rekor key; `body` is a `hashedrekord` 0.0.1 entry naming the signing key
 * (PEM), the signature and the SHA-256 of the signed payload, which must all be this signature's.
 */
import { createHash, createPublicKey, type KeyObject, verify as verifyBytes } from 'node:crypto';
import { ErrorCodes, GantryError } from '../errors.js';

function invalid(message: string): GantryError {
  return new GantryError(ErrorCodes.InvalidSignature, message);
}

/** RFC 8785 (JCS) canonical JSON: object keys sorted by UTF-16 code units, ES number and string forms. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value))
      throw invalid('canonicalizing Rekor SET JSON: number out of range');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.keys(value as Record<string, unknown>)
    .sort()
    .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
  return `{${entries.join(',')}}`;
}

function objectWithExactKeys(value: unknown, keys: string[], what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid(`${what} is not a JSON object`);
  const object = value as Record<string, unknown>;
  for (const key of Object.keys(object))
    if (!keys.includes(key)) throw invalid(`Unexpected key "${key}" in ${what}`);
  for (const key of keys) if (!(key in object)) throw invalid(`Key "${key}" missing in ${what}`);
  return object;
}

function base64Bytes(value: unknown, what: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    throw invalid(`${what} is not base64 data`);
  }
  return Buffer.from(value, 'base64');
}

/** The DER bytes of the only PEM block of `text`; undefined when it is not one PEM block. */
function pemBytes(text: string): Buffer | undefined {
  const match = /^\s*-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----\r?\n?$/.exec(text);
  if (!match) return undefined;
  return Buffer.from(match[2]!.replace(/\s+/g, ''), 'base64');
}

function member(object: unknown, key: string, what: string): unknown {
  if (typeof object !== 'object' || object === null || Array.isArray(object))
    throw invalid(`${what} is not a JSON object`);
  const value = (object as Record<string, unknown>)[key];
  if (value === undefined || value === null) throw invalid(`Missing "${key}" field in ${what}`);
  return value;
}

/** Reads Rekor public keys (PEM); they must be ECDSA keys. */
export function readRekorPublicKey(pem: Uint8Array): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(Buffer.from(pem).toString('utf8'));
  } catch (error) {
    throw new GantryError(ErrorCodes.SigningFailed, `parsing Rekor public key: ${(error as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ec') {
    throw new GantryError(ErrorCodes.SigningFailed, 'Rekor public key is not using ECDSA');
  }
  return key;
}

/**
 * Verifies a Rekor SET for a signature made with a key or certificate whose DER is
 * `expectedKeyOrCertificate` (the entry must name it, as PEM), whose base64 signature is
 * `base64Signature` over `payload`. Returns the entry's integrated
 * time (seconds). Throws `ERR_GANTRY_INVALID_SIGNATURE` naming the mismatch.
 */
export function verifyRekorSet(
  rekorKeys: readonly KeyObject[],
  set: string,
  expectedKeyOrCertificate: Uint8Array,
  base64Signature: string,
  payload: Uint8Array,
): number {
  let parsed: unknown;
  try {
    parsed = JSON.parse(set);
  } catch (error) {
    throw invalid(`parsing Rekor SET: ${(error as Error).message}`);
  }
  const top = objectWithExactKeys(parsed, ['SignedEntryTimestamp', 'Payload'], 'the Rekor SET');
  const timestamp = base64Bytes(top.SignedEntryTimestamp, 'SignedEntryTimestamp');
  const canonical = Buffer.from(canonicalJson(top.Payload));
  if (!rekorKeys.some((key) => safeVerify(key, canonical, timestamp))) {
    throw invalid('cryptographic signature verification of Rekor SET failed');
  }
  const setPayload = objectWithExactKeys(
    top.Payload,
    ['body', 'integratedTime', 'logIndex', 'logID'],
    'the Rekor SET payload',
  );
  if (!Number.isInteger(setPayload.integratedTime))
    throw invalid('parsing Rekor SET payload: integratedTime is not an integer');
  let entry: unknown;
  try {
    entry = JSON.parse(base64Bytes(setPayload.body, 'the Rekor SET body').toString('utf8'));
  } catch (error) {
    if (error instanceof GantryError) throw error;
    throw invalid(`decoding the body of a Rekor SET payload: ${(error as Error).message}`);
  }
  const apiVersion = (entry as { apiVersion?: unknown } | null)?.apiVersion;
  if (apiVersion === undefined || apiVersion === null) throw invalid('missing Rekor SET Payload API version');
  if (apiVersion !== '0.0.1')
    throw invalid(`unsupported Rekor SET Payload hashedrekord version ${JSON.stringify(apiVersion)}`);
  const spec = member(entry, 'spec', 'the Rekor entry');
  const signature = member(spec, 'signature', 'hashedrekord');
  const publicKey = member(signature, 'publicKey', 'hashedrekord signature');
  const entryKeyPem = base64Bytes(
    member(publicKey, 'content', 'hashedrekord signature.publicKey'),
    'signature.publicKey.content',
  );
  const entryKey = pemBytes(entryKeyPem.toString('utf8'));
  if (entryKey === undefined) throw invalid('publicKey in Rekor SET is not in PEM format');
  if (!entryKey.equals(expectedKeyOrCertificate)) throw invalid('publicKey in Rekor SET does not match');
  const entrySignature = base64Bytes(
    member(signature, 'content', 'hashedrekord signature'),
    'signature.content',
  );
  if (!entrySignature.equals(base64Bytes(base64Signature, 'the signature annotation'))) {
    throw invalid('signature in Rekor SET does not match');
  }
  const hash = member(member(spec, 'data', 'hashedrekord'), 'hash', 'hashedrekord data');
  const algorithm = member(hash, 'algorithm', 'hashedrekord data.hash');
  if (algorithm !== 'sha256')
    throw invalid(`Unexpected "data.hash.algorithm" value ${JSON.stringify(algorithm)}`);
  const value = member(hash, 'value', 'hashedrekord data.hash');
  if (typeof value !== 'string' || !/^[0-9a-fA-F]*$/.test(value))
    throw invalid('Invalid "data.hash.value" field in hashedrekord');
  if (value.toLowerCase() !== createHash('sha256').update(payload).digest('hex')) {
    throw invalid('payload in Rekor SET does not match');
  }
  return setPayload.integratedTime as number;
}

function safeVerify(key: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verifyBytes('sha256', data, key, signature);
  } catch {
    return false;
  }
}
