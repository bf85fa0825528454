/**
 * Signatures in containers/image's storage form (what `ImageSource.getSignatures` returns and
 * `ImageDestination.putSignatures` takes): a simple-signing signature is the raw OpenPGP message; any
 * other format is a 0 byte, the format name, a newline and the format's data. A sigstore signature is
 * `\0sigstore-json\n` + `{"mimeType", "payload" (base64), "annotations"}`.
 */
import { ErrorCodes, GantryError } from '../errors.js';

/** The media type of a cosign simple-signing payload (a sigstore image signature). */
export const sigstoreSignatureMimeType = 'application/vnd.dev.cosign.simplesigning.v1+json';
/** The annotation holding the base64 signature of the payload. */
export const sigstoreSignatureAnnotation = 'dev.cosignproject.cosign/signature';
/** The annotation holding a Fulcio-issued certificate (PEM). */
export const sigstoreCertificateAnnotation = 'dev.sigstore.cosign/certificate';
/** The annotation holding the certificate's intermediate chain (PEM). */
export const sigstoreChainAnnotation = 'dev.sigstore.cosign/chain';
/** The annotation holding a Rekor signed entry timestamp (JSON). */
export const sigstoreSetAnnotation = 'dev.sigstore.cosign/bundle';

/** A sigstore signature: the payload and its annotations, untrusted until verified. */
export interface SigstoreSignature {
  format: 'sigstore';
  mimeType: string;
  payload: Uint8Array;
  annotations: Record<string, string>;
}

/** A stored signature, by format. */
export type StoredSignature =
  | { format: 'simple-signing'; signature: Uint8Array }
  | SigstoreSignature
  | { format: 'unknown'; name: string };

const openPgpFirstBytes = new Set([
  0xa0, 0xa1, 0xa2, 0xa3, 0xc8, 0x90, 0x91, 0x92, 0x3d, 0xc4, 0x88, 0x89, 0x8a, 0x8b, 0xc2,
]);
const sigstoreFormatName = 'sigstore-json';
const simpleSigningFormatName = 'simple-signing';

function invalid(message: string): GantryError {
  return new GantryError(ErrorCodes.InvalidSignature, message);
}

/**
 * Reads a signature in storage form. Throws `ERR_GANTRY_INVALID_SIGNATURE` when it is empty, has no
 * format name, or is a sigstore signature whose JSON is malformed. Unknown formats are returned as
 * `{ format: 'unknown' }` (a requirement counts them but cannot verify them).
 */
export function parseStoredSignature(blob: Uint8Array): StoredSignature {
  if (blob.byteLength === 0) throw invalid('empty signature');
  if (blob[0] !== 0) {
    // An OpenPGP message starts with a compressed-data, one-pass-signature or signature packet tag.
    if (openPgpFirstBytes.has(blob[0]!)) return { format: 'simple-signing', signature: blob };
    throw invalid(`unrecognized signature format, starting with binary 0x${blob[0]!.toString(16)}`);
  }
  const newline = blob.indexOf(0x0a);
  if (newline === -1) throw invalid('invalid signature format, missing newline');
  const name = Buffer.from(blob.subarray(1, newline)).toString('utf8');
  const data = blob.subarray(newline + 1);
  if (name === simpleSigningFormatName) return { format: 'simple-signing', signature: data };
  if (name !== sigstoreFormatName) return { format: 'unknown', name };
  let record: unknown;
  try {
    record = JSON.parse(Buffer.from(data).toString('utf8'));
  } catch (error) {
    throw invalid(`invalid sigstore signature JSON: ${(error as Error).message}`);
  }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) {
    throw invalid('invalid sigstore signature JSON: not an object');
  }
  const { mimeType, payload, annotations } = record as Record<string, unknown>;
  if (typeof mimeType !== 'string') throw invalid('invalid sigstore signature: "mimeType" is not a string');
  if (typeof payload !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(payload) || payload.length % 4 !== 0) {
    throw invalid('invalid sigstore signature: "payload" is not base64 data');
  }
  const annotationMap: Record<string, string> = {};
  if (annotations !== undefined && annotations !== null) {
    if (typeof annotations !== 'object' || Array.isArray(annotations)) {
      throw invalid('invalid sigstore signature: "annotations" is not an object');
    }
    for (const [key, value] of Object.entries(annotations)) {
      if (typeof value !== 'string')
        throw invalid(`invalid sigstore signature: annotation ${key} is not a string`);
      annotationMap[key] = value;
    }
  }
  return {
    format: 'sigstore',
    mimeType,
    payload: new Uint8Array(Buffer.from(payload, 'base64')),
    annotations: annotationMap,
  };
}

/** The storage form of a sigstore signature. */
export function sigstoreSignatureBlob(signature: Omit<SigstoreSignature, 'format'>): Uint8Array {
  const json = JSON.stringify({
    mimeType: signature.mimeType,
    payload: Buffer.from(signature.payload).toString('base64'),
    annotations: signature.annotations,
  });
  return new Uint8Array(Buffer.concat([Buffer.from(`\0${sigstoreFormatName}\n`), Buffer.from(json)]));
}
