import { type ErrorCode, ErrorCodes, GantryError } from '@gantry/core/transport';
import type { Dispatcher } from 'undici';

/** One entry of a Distribution API error body: `{"errors": [{"code", "message", "detail"}]}`. */
export interface RegistryErrorEntry {
  code: string;
  message: string;
}

const maxErrorBodyBytes = 64 * 1024;

/** Reads at most `limit` bytes of a body; the rest is never read (the body is destroyed at the limit). */
export async function readLimitedBody(body: Dispatcher.ResponseData['body'], limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    const buffer = chunk as Buffer;
    chunks.push(buffer.subarray(0, limit - total));
    total += buffer.byteLength;
    // Stop at the limit: leaving the loop destroys the body (and its connection), so an endless or huge
    // body is never read to its end.
    if (total >= limit) break;
  }
  return Buffer.concat(chunks);
}

/** Parses a Distribution error body; empty when it is not one. */
export function parseRegistryErrors(body: Buffer): RegistryErrorEntry[] {
  try {
    const value = JSON.parse(body.toString('utf8')) as { errors?: unknown; details?: unknown };
    if (!Array.isArray(value.errors)) return [];
    return value.errors
      .filter((entry): entry is Record<string, unknown> => typeof entry === 'object' && entry !== null)
      .map((entry) => ({
        code: typeof entry.code === 'string' ? entry.code : '',
        message: typeof entry.message === 'string' ? entry.message : '',
      }));
  } catch {
    return [];
  }
}

/** A short description of a response body's errors, e.g. `manifest unknown: manifest unknown`. */
export function describeRegistryErrors(status: number, entries: RegistryErrorEntry[], body: Buffer): string {
  if (entries.length > 0) {
    return entries
      .map((entry) =>
        [entry.code.toLowerCase().replaceAll('_', ' '), entry.message].filter(Boolean).join(': '),
      )
      .join('; ');
  }
  const text = body.toString('utf8').trim();
  const statusText = `HTTP status ${status}`;
  if (text === '' || text.length > 200 || /[<>]/.test(text)) return statusText;
  return `${statusText}: ${text}`;
}

/**
 * What a request authenticated with: a username and password (`--creds`, an auth file entry; for a
 * token registry, sent to its token server), a bearer token given as is (`--registry-token`), an
 * identity (refresh) token from an auth file, or nothing.
 */
export type SentCredentials = 'none' | 'password' | 'registry-token' | 'identity-token';

export interface ResponseErrorOptions {
  /** What was being done, e.g. `reading manifest latest in 127.0.0.1:5000/app`. */
  what: string;
  /**
   * The code for 404 (default `ERR_GANTRY_INTERNAL`). Only a read of the image itself (its manifest)
   * passes `ERR_GANTRY_IMAGE_NOT_FOUND`: that code makes the CLI exit 2, which means "no such image".
   */
  notFoundCode?: ErrorCode;
  /** What the request authenticated with (words the 401 message); default `none`. */
  credentialsSent?: SentCredentials;
}

/** Why a 401 happened, in the words of what was sent. */
const unauthorizedAdvice: Record<SentCredentials, string> = {
  none: 'authentication required (no credentials found)',
  password: 'invalid username/password',
  'registry-token': 'the registry token was refused',
  'identity-token': 'the identity token was refused',
};

/**
 * Converts an unexpected registry response into a Gantry error, consuming the body:
 * 401 and 403 → `ERR_GANTRY_UNAUTHORIZED` (worded after `credentialsSent`); 404 → `notFoundCode`; 405 → `ERR_GANTRY_NOT_SUPPORTED`;
 * 408, 429 and 5xx → `ERR_GANTRY_TRANSIENT` (retryable); a rejected manifest (`MANIFEST_INVALID`,
 * `MANIFEST_UNVERIFIED`, `TAG_INVALID`) → `ERR_GANTRY_UNSUPPORTED_MANIFEST_TYPE` so the copy may try
 * another format; a blob refused for its content (`DIGEST_INVALID`, `SIZE_INVALID`) →
 * `ERR_GANTRY_DIGEST_MISMATCH` / `ERR_GANTRY_SIZE_MISMATCH`; anything else → `ERR_GANTRY_INTERNAL`.
 */
export async function responseError(
  response: Dispatcher.ResponseData,
  options: ResponseErrorOptions,
): Promise<GantryError> {
  const body = await readLimitedBody(response.body, maxErrorBodyBytes).catch(() => Buffer.alloc(0));
  return statusError(response.statusCode, body, options);
}

/** `responseError` for a body already read. */
export function statusError(status: number, body: Buffer, options: ResponseErrorOptions): GantryError {
  const entries = parseRegistryErrors(body);
  const detail = describeRegistryErrors(status, entries, body);
  const codes = new Set(entries.map((entry) => entry.code));
  if (status === 401) {
    const advice = unauthorizedAdvice[options.credentialsSent ?? 'none'];
    return new GantryError(ErrorCodes.Unauthorized, `${options.what}: ${advice}: ${detail}`);
  }
  if (status === 403)
    return new GantryError(ErrorCodes.Unauthorized, `${options.what}: access denied: ${detail}`);
  if (status === 404)
    return new GantryError(options.notFoundCode ?? ErrorCodes.Internal, `${options.what}: ${detail}`);
  if (status === 405)
    return new GantryError(
      ErrorCodes.NotSupported,
      `${options.what}: the registry does not allow this operation: ${detail}`,
    );
  if (status === 408 || status === 429 || status >= 500) {
    return new GantryError(ErrorCodes.Transient, `${options.what}: ${detail}`, { retryable: true });
  }
  if (
    status === 400 &&
    (codes.has('MANIFEST_INVALID') || codes.has('MANIFEST_UNVERIFIED') || codes.has('TAG_INVALID'))
  ) {
    return new GantryError(
      ErrorCodes.UnsupportedManifestType,
      `${options.what}: the registry rejected the manifest: ${detail}`,
    );
  }
  if (status === 400 && codes.has('DIGEST_INVALID')) {
    return new GantryError(ErrorCodes.DigestMismatch, `${options.what}: digest mismatch: ${detail}`);
  }
  if (status === 400 && codes.has('SIZE_INVALID')) {
    return new GantryError(ErrorCodes.SizeMismatch, `${options.what}: size mismatch: ${detail}`);
  }
  return new GantryError(ErrorCodes.Internal, `${options.what}: ${detail}`);
}
