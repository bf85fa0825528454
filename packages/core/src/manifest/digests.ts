import {
  canonicalDigestAlgorithm,
  type Digest,
  type DigestAlgorithm,
  digestAlgorithm,
  digestOf,
} from '../digest.js';
import { ErrorCodes, GantryError } from '../errors.js';
import { MediaTypes } from './media-types.js';

const textDecoder = new TextDecoder('utf-8', { fatal: false });

/** Parses manifest bytes as JSON; undefined when they are not JSON. */
export function parseJsonBytes(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(textDecoder.decode(bytes));
  } catch {
    return undefined;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Guesses a manifest's MIME type from its bytes, as containers/image `manifest.GuessMIMEType`:
 * - a `mediaType` field naming an OCI manifest/index or a Docker schema2 manifest/list wins;
 * - `schemaVersion` 1: schema1, signed when a `signatures` field is present;
 * - `schemaVersion` 2 without a known `mediaType`: the config's media type decides (OCI config ->
 *   OCI manifest, Docker config -> Docker schema2); else a non-empty `manifests` makes an OCI index;
 *   else an OCI manifest.
 * Returns '' when the bytes are not JSON or fit none of these.
 */
export function guessManifestMediaType(bytes: Uint8Array): string {
  const value = parseJsonBytes(bytes);
  if (!isRecord(value)) return '';
  const mediaType = typeof value.mediaType === 'string' ? value.mediaType : '';
  switch (mediaType) {
    case MediaTypes.DockerManifest:
    case MediaTypes.DockerManifestList:
    case MediaTypes.OciManifest:
    case MediaTypes.OciIndex:
      return mediaType;
  }
  if (value.schemaVersion === 1) {
    return value.signatures !== undefined && value.signatures !== null
      ? MediaTypes.DockerSchema1Signed
      : MediaTypes.DockerSchema1;
  }
  if (value.schemaVersion === 2) {
    const config = isRecord(value.config) ? value.config : undefined;
    const configMediaType = config && typeof config.mediaType === 'string' ? config.mediaType : '';
    if (configMediaType === MediaTypes.OciConfig) return MediaTypes.OciManifest;
    if (configMediaType === MediaTypes.DockerConfig) return MediaTypes.DockerManifest;
    if (Array.isArray(value.manifests) && value.manifests.length > 0) {
      return configMediaType === '' ? MediaTypes.OciIndex : configMediaType;
    }
    return MediaTypes.OciManifest;
  }
  return '';
}

const knownManifestMediaTypes: readonly string[] = [
  MediaTypes.DockerSchema1,
  MediaTypes.DockerSchema1Signed,
  MediaTypes.OciManifest,
  MediaTypes.OciIndex,
  MediaTypes.DockerManifest,
  MediaTypes.DockerManifestList,
];

/**
 * Normalises a manifest MIME type reported by storage or a server, as containers/image
 * `manifest.NormalizedMIMEType`: known manifest types stay as they are. For anything else ('' ,
 * `text/plain`, `application/json`…): when `bytes` are given, the type guessed from them (if
 * recognisable); otherwise (or when unrecognisable) Docker schema1 signed, which is what old
 * registries served under such types.
 */
export function normalizeManifestMediaType(mediaType: string, bytes?: Uint8Array): string {
  if (knownManifestMediaTypes.includes(mediaType)) return mediaType;
  if (bytes !== undefined) {
    const guessed = guessManifestMediaType(bytes);
    if (guessed !== '') return guessed;
  }
  return MediaTypes.DockerSchema1Signed;
}

function base64UrlDecode(value: string, what: string): Buffer {
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(value)) {
    throw new GantryError(
      ErrorCodes.InvalidManifest,
      `invalid signed schema1 manifest: ${what} is not base64url`,
    );
  }
  return Buffer.from(value, 'base64url');
}

/**
 * The payload a signed schema1 manifest (libtrust JWS, "prettyjws") signs: the manifest's first
 * `formatLength` bytes followed by the base64url-decoded `formatTail`, both read from the protected
 * header of the signatures, which must all agree. Throws `ERR_GANTRY_INVALID_MANIFEST` when the
 * signatures are missing or malformed.
 */
export function schema1SignedPayload(bytes: Uint8Array): Uint8Array {
  const value = parseJsonBytes(bytes);
  if (!isRecord(value))
    throw new GantryError(ErrorCodes.InvalidManifest, 'invalid signed schema1 manifest: not a JSON object');
  const signatures = value.signatures;
  if (!Array.isArray(signatures) || signatures.length === 0) {
    throw new GantryError(ErrorCodes.InvalidManifest, 'invalid signed schema1 manifest: no signatures');
  }
  let payload: Uint8Array | undefined;
  for (const [index, signature] of signatures.entries()) {
    if (!isRecord(signature) || typeof signature.protected !== 'string') {
      throw new GantryError(
        ErrorCodes.InvalidManifest,
        `invalid signed schema1 manifest: signature ${index} has no protected header`,
      );
    }
    const header = parseJsonBytes(
      base64UrlDecode(signature.protected, `signature ${index} protected header`),
    );
    if (!isRecord(header)) {
      throw new GantryError(
        ErrorCodes.InvalidManifest,
        `invalid signed schema1 manifest: signature ${index} protected header is not JSON`,
      );
    }
    const formatLength = header.formatLength;
    const formatTail = header.formatTail;
    if (
      typeof formatLength !== 'number' ||
      !Number.isInteger(formatLength) ||
      formatLength < 0 ||
      formatLength > bytes.byteLength
    ) {
      throw new GantryError(
        ErrorCodes.InvalidManifest,
        `invalid signed schema1 manifest: signature ${index} has an invalid formatLength`,
      );
    }
    if (typeof formatTail !== 'string') {
      throw new GantryError(
        ErrorCodes.InvalidManifest,
        `invalid signed schema1 manifest: signature ${index} has no formatTail`,
      );
    }
    const tail = base64UrlDecode(formatTail, `signature ${index} formatTail`);
    const candidate = Buffer.concat([bytes.subarray(0, formatLength), tail]);
    if (payload === undefined) payload = candidate;
    else if (Buffer.compare(payload, candidate) !== 0) {
      throw new GantryError(
        ErrorCodes.InvalidManifest,
        'invalid signed schema1 manifest: signatures sign different payloads',
      );
    }
  }
  return payload!;
}

/**
 * The digest of a manifest: of its exact bytes, except for signed schema1 manifests, whose digest
 * is that of the signed JWS payload (the manifest without its `signatures`), as registries compute it.
 */
export function manifestDigest(
  bytes: Uint8Array,
  algorithm: DigestAlgorithm = canonicalDigestAlgorithm,
): Digest {
  if (guessManifestMediaType(bytes) === MediaTypes.DockerSchema1Signed) {
    return digestOf(schema1SignedPayload(bytes), algorithm);
  }
  return digestOf(bytes, algorithm);
}

/** Whether the manifest has the given digest (computed with the digest's own algorithm). */
export function manifestMatchesDigest(bytes: Uint8Array, digest: Digest): boolean {
  return manifestDigest(bytes, digestAlgorithm(digest)) === digest;
}
