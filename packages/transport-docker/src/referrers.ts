import {
  type Digest,
  digestAlgorithm,
  digestHex,
  ErrorCodes,
  GantryError,
  MediaTypes,
  type TransportContext,
} from '@gantry/core';
import { bareMediaType, headerValue, maxManifestBytes } from './manifests.js';
import type { DockerImageReference } from './reference.js';
import { registryAccessFor } from './registries.js';
import { RegistryClient } from './registry-client.js';
import { readLimitedBody, responseError } from './registry-errors.js';
import { nextPageLink } from './tags.js';

/** One manifest that refers to a subject (a signature, an SBOM, an attestation…). */
export interface ReferrerDescriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface ListReferrersOptions {
  /** Only referrers of this artifact type. */
  artifactType?: string;
  signal?: AbortSignal;
}

/** The tag of the referrers tag schema (distribution-spec 1.1 fallback): `<alg>-<hex>`, truncated to 128. */
export function referrersFallbackTag(subject: Digest): string {
  return `${digestAlgorithm(subject)}-${digestHex(subject)}`.slice(0, 128);
}

function parseReferrersIndex(body: Buffer, what: string): ReferrerDescriptor[] {
  let index: { manifests?: unknown };
  try {
    index = JSON.parse(body.toString('utf8')) as { manifests?: unknown };
  } catch {
    throw new GantryError(ErrorCodes.InvalidManifest, `${what}: the referrers index is not JSON`);
  }
  if (index.manifests === undefined || index.manifests === null) return [];
  if (!Array.isArray(index.manifests)) {
    throw new GantryError(ErrorCodes.InvalidManifest, `${what}: the referrers index has no "manifests" list`);
  }
  const referrers: ReferrerDescriptor[] = [];
  for (const entry of index.manifests as unknown[]) {
    if (typeof entry !== 'object' || entry === null) continue;
    const descriptor = entry as Record<string, unknown>;
    if (typeof descriptor.digest !== 'string' || typeof descriptor.size !== 'number') continue;
    const referrer: ReferrerDescriptor = {
      mediaType: typeof descriptor.mediaType === 'string' ? descriptor.mediaType : '',
      digest: descriptor.digest as Digest,
      size: descriptor.size,
    };
    if (typeof descriptor.artifactType === 'string') referrer.artifactType = descriptor.artifactType;
    if (typeof descriptor.annotations === 'object' && descriptor.annotations !== null) {
      referrer.annotations = descriptor.annotations as Record<string, string>;
    }
    referrers.push(referrer);
  }
  return referrers;
}

/**
 * Lists the manifests that name `subject` as their subject, as OCI distribution-spec 1.1 says:
 * `GET /v2/<name>/referrers/<digest>` (filtered by `artifactType` here when the registry did not
 * say it filtered, `OCI-Filters-Applied`); when the registry has no referrers API (404), the
 * referrers tag schema: the OCI index tagged `<alg>-<hex>`, or none. Pagination (`Link`) is followed.
 */
export async function listReferrers(
  reference: DockerImageReference,
  subject: Digest,
  context: TransportContext = {},
  options: ListReferrersOptions = {},
): Promise<ReferrerDescriptor[]> {
  const access = await registryAccessFor(context, reference.reference.name);
  const client = await RegistryClient.open(
    reference.state,
    { registry: reference.registry, repository: reference.repository, actions: 'pull', role: 'source' },
    context,
    access,
  );
  const signal = options.signal ?? context.signal;
  const what = `listing referrers of ${subject} in ${reference.registry}/${reference.repository}`;
  const first = new URL(`/v2/${reference.repository}/referrers/${subject}`, `${client.origin}/`);
  if (options.artifactType !== undefined) first.searchParams.set('artifactType', options.artifactType);
  const referrers: ReferrerDescriptor[] = [];
  let filtered = false;
  let target: URL | undefined = first;
  const seen = new Set<string>();
  while (target !== undefined) {
    if (seen.has(target.href))
      throw new GantryError(ErrorCodes.Internal, `${what}: the registry's pages loop`);
    seen.add(target.href);
    const response = await client.request({
      method: 'GET',
      target,
      headers: { accept: MediaTypes.OciIndex },
      signal,
      what,
    });
    if (response.statusCode === 404 && referrers.length === 0 && target === first) {
      await response.body.dump();
      return listReferrersByTag(client, subject, options, signal, what);
    }
    if (response.statusCode !== 200) {
      throw await responseError(response, { what, credentialsSent: client.hasCredentials });
    }
    const body = await readLimitedBody(response.body, maxManifestBytes + 1);
    if (body.byteLength > maxManifestBytes)
      throw new GantryError(ErrorCodes.InvalidManifest, `${what}: the referrers index is too large`);
    referrers.push(...parseReferrersIndex(body, what));
    filtered ||= (headerValue(response.headers, 'oci-filters-applied') ?? '')
      .split(',')
      .map((value) => value.trim())
      .includes('artifactType');
    const next = nextPageLink(headerValue(response.headers, 'link'));
    target = next === undefined ? undefined : new URL(next, target);
  }
  return options.artifactType === undefined || filtered
    ? referrers
    : referrers.filter((referrer) => referrer.artifactType === options.artifactType);
}

async function listReferrersByTag(
  client: RegistryClient,
  subject: Digest,
  options: ListReferrersOptions,
  signal: AbortSignal | undefined,
  what: string,
): Promise<ReferrerDescriptor[]> {
  const tag = referrersFallbackTag(subject);
  const response = await client.request({
    method: 'GET',
    target: `/v2/${client.scope.repository}/manifests/${tag}`,
    headers: { accept: MediaTypes.OciIndex },
    signal,
    what: `${what} (tag ${tag})`,
  });
  if (response.statusCode === 404) {
    await response.body.dump();
    return [];
  }
  if (response.statusCode !== 200) {
    throw await responseError(response, {
      what: `${what} (tag ${tag})`,
      credentialsSent: client.hasCredentials,
    });
  }
  const body = await readLimitedBody(response.body, maxManifestBytes + 1);
  if (body.byteLength > maxManifestBytes)
    throw new GantryError(ErrorCodes.InvalidManifest, `${what}: the referrers index is too large`);
  const mediaType = bareMediaType(headerValue(response.headers, 'content-type'));
  if (mediaType !== MediaTypes.OciIndex) {
    throw new GantryError(
      ErrorCodes.InvalidManifest,
      `${what}: tag ${tag} is a ${mediaType || 'manifest of unknown type'}, not an OCI index`,
    );
  }
  const referrers = parseReferrersIndex(body, what);
  return options.artifactType === undefined
    ? referrers
    : referrers.filter((referrer) => referrer.artifactType === options.artifactType);
}
