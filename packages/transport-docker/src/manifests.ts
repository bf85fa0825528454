import {
  allManifestMediaTypes,
  type Digest,
  ErrorCodes,
  GantryError,
  isDigest,
  type ManifestBlob,
  manifestMatchesDigest,
} from '@gantry/core/transport';
import { networkError } from './connections.js';
import type { RegistryClient } from './registry-client.js';
import { readLimitedBody } from './registry-errors.js';

/** Manifests larger than this are refused (containers/image's limit). */
export const maxManifestBytes = 4 * 1024 * 1024;

/** The `Accept` header for manifest requests: every manifest type Gantry reads. */
export const manifestAcceptHeader = allManifestMediaTypes.join(', ');

/** A header's first value. */
export function headerValue(
  headers: Record<string, string | string[] | undefined>,
  name: string,
): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** A MIME type without parameters (`application/json; charset=utf-8` → `application/json`). */
export function bareMediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim();
}

/**
 * GETs `/v2/<repository>/manifests/<tagOrDigest>` with every manifest type accepted, and returns the
 * bytes exactly as served with the served MIME type (parameters dropped). When `tagOrDigest` is a
 * digest, the bytes must have it (else `ERR_GANTRY_DIGEST_MISMATCH`). 404 → `ERR_GANTRY_IMAGE_NOT_FOUND`.
 */
export async function fetchManifest(
  client: RegistryClient,
  tagOrDigest: string,
  signal: AbortSignal | undefined,
): Promise<ManifestBlob> {
  const repository = client.scope.repository;
  const what = `reading manifest ${tagOrDigest} in ${client.scope.registry}/${repository}`;
  const response = await client.requestExpecting(
    {
      method: 'GET',
      target: `/v2/${repository}/manifests/${tagOrDigest}`,
      headers: { accept: manifestAcceptHeader },
      signal,
      what,
    },
    [200],
    ErrorCodes.ImageNotFound,
  );
  const declaredLength = Number(headerValue(response.headers, 'content-length') ?? -1);
  if (declaredLength > maxManifestBytes) {
    await response.body.dump();
    throw new GantryError(
      ErrorCodes.InvalidManifest,
      `${what}: manifest too large (${declaredLength} bytes, at most ${maxManifestBytes})`,
    );
  }
  let bytes: Buffer;
  try {
    bytes = await readLimitedBody(response.body, maxManifestBytes + 1);
  } catch (error) {
    throw networkError(error, what, signal, client.options.idleTimeoutMs);
  }
  if (bytes.byteLength > maxManifestBytes) {
    throw new GantryError(
      ErrorCodes.InvalidManifest,
      `${what}: manifest too large (more than ${maxManifestBytes} bytes)`,
    );
  }
  if (isDigest(tagOrDigest) && !manifestMatchesDigest(bytes, tagOrDigest as Digest)) {
    throw new GantryError(
      ErrorCodes.DigestMismatch,
      `${what}: the registry served a manifest that does not match digest ${tagOrDigest}`,
    );
  }
  return {
    bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    mediaType: bareMediaType(headerValue(response.headers, 'content-type')),
  };
}

/**
 * The blob digests a single-image manifest references (config and layers; schema1 `fsLayers`).
 * Lists and unparseable manifests give none. Used to learn where blobs are, for mounts.
 */
export function referencedBlobDigests(bytes: Uint8Array): string[] {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    return [];
  }
  if (typeof value !== 'object' || value === null) return [];
  const manifest = value as { config?: { digest?: unknown }; layers?: unknown; fsLayers?: unknown };
  const digests: string[] = [];
  if (typeof manifest.config?.digest === 'string') digests.push(manifest.config.digest);
  for (const [list, field] of [
    [manifest.layers, 'digest'],
    [manifest.fsLayers, 'blobSum'],
  ] as const) {
    if (!Array.isArray(list)) continue;
    for (const entry of list) {
      const digest =
        typeof entry === 'object' && entry !== null ? (entry as Record<string, unknown>)[field] : undefined;
      if (typeof digest === 'string' && isDigest(digest)) digests.push(digest);
    }
  }
  return [...new Set(digests)];
}
