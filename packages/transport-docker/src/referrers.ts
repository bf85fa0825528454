import {
  type Digest,
  digestAlgorithm,
  digestHex,
  ErrorCodes,
  GantryError,
  type ListReferrersOptions,
  MediaTypes,
  type ReferrerDescriptor,
  type TransportContext,
} from '@gantry/core/transport';
import { bareMediaType, headerValue, maxManifestBytes } from './manifests.js';
import type { DockerImageReference } from './reference.js';
import { registryAccessFor } from './registries.js';
import { RegistryClient } from './registry-client.js';
import { readLimitedBody, responseError } from './registry-errors.js';
import { nextPageLink } from './tags.js';

/** One manifest that refers to a subject (a signature, an SBOM, an attestation…): core's type. */
export type { ListReferrersOptions, ReferrerDescriptor };

/**
 * The tag of the referrers tag schema (distribution-spec 1.1 fallback): the digest's algorithm cut
 * to 32 characters, `-`, its encoded part cut to 64, with characters a tag cannot hold replaced by `-`
 * (`sha256:abc…` → `sha256-abc…`).
 */
export function referrersFallbackTag(subject: Digest): string {
  const tag = `${digestAlgorithm(subject).slice(0, 32)}-${digestHex(subject).slice(0, 64)}`;
  return tag.replace(/[^\w.-]/g, '-');
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
  return listReferrersWith(client, subject, options, options.signal ?? context.signal);
}

/**
 * `listReferrers` through an open client (an image source's, which may read from a mirror): the
 * referrers API, else the referrers tag schema.
 */
export async function listReferrersWith(
  client: RegistryClient,
  subject: Digest,
  options: ListReferrersOptions,
  signal: AbortSignal | undefined,
): Promise<ReferrerDescriptor[]> {
  const { registry, repository } = client.scope;
  const what = `listing referrers of ${subject} in ${registry}/${repository}`;
  const first = new URL(`/v2/${repository}/referrers/${subject}`, `${client.origin}/`);
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
      throw await responseError(response, { what, credentialsSent: client.sentCredentials });
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
      credentialsSent: client.sentCredentials,
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

/** The referrers index (OCI index) a registry without the referrers API keeps under the schema tag. */
interface ReferrersIndex {
  /** The index's JSON object, with fields other than `manifests` kept as they are. */
  object: Record<string, unknown>;
  manifests: unknown[];
}

/**
 * Reads the index tagged `referrersFallbackTag(subject)`: an empty one when the tag does not exist;
 * `ERR_GANTRY_INVALID_MANIFEST` when the tag holds something else than an OCI index (the spec's client
 * reports the failure rather than overwriting it).
 */
async function readReferrersTagIndex(
  client: RegistryClient,
  subject: Digest,
  signal: AbortSignal | undefined,
  what: string,
): Promise<ReferrersIndex> {
  const tag = referrersFallbackTag(subject);
  const response = await client.request({
    method: 'GET',
    target: `/v2/${client.scope.repository}/manifests/${tag}`,
    headers: { accept: MediaTypes.OciIndex },
    signal,
    what,
  });
  if (response.statusCode === 404) {
    await response.body.dump();
    return {
      object: { schemaVersion: 2, mediaType: MediaTypes.OciIndex, manifests: [] },
      manifests: [],
    };
  }
  if (response.statusCode !== 200) {
    throw await responseError(response, { what, credentialsSent: client.sentCredentials });
  }
  const body = await readLimitedBody(response.body, maxManifestBytes + 1);
  if (body.byteLength > maxManifestBytes)
    throw new GantryError(ErrorCodes.InvalidManifest, `${what}: the referrers index is too large`);
  const mediaType = bareMediaType(headerValue(response.headers, 'content-type'));
  let object: unknown;
  try {
    object = JSON.parse(body.toString('utf8'));
  } catch {
    object = undefined;
  }
  if (
    mediaType !== MediaTypes.OciIndex ||
    typeof object !== 'object' ||
    object === null ||
    Array.isArray(object) ||
    !Array.isArray((object as { manifests?: unknown }).manifests ?? [])
  ) {
    throw new GantryError(
      ErrorCodes.InvalidManifest,
      `${what}: tag ${tag} holds a ${mediaType || 'manifest of unknown type'} that is not an OCI index; not overwriting it`,
    );
  }
  const index = object as Record<string, unknown>;
  return { object: index, manifests: [...((index.manifests as unknown[] | undefined) ?? [])] };
}

/**
 * Adds `referrers` to the referrers tag schema index of `subject` as distribution-spec 1.1 ("Pushing
 * Manifests with Subject") tells clients of registries without the referrers API: GET the index tagged
 * `<alg>-<hex>` (none: start empty; not an OCI index: fail), append each descriptor not listed yet (by
 * digest), PUT it back under the tag — only when something was added. Not atomic: a concurrent writer
 * may lose an entry, as the spec warns.
 */
export async function addToReferrersTagIndex(
  client: RegistryClient,
  subject: Digest,
  referrers: readonly ReferrerDescriptor[],
  signal: AbortSignal | undefined,
): Promise<void> {
  const { registry, repository } = client.scope;
  const tag = referrersFallbackTag(subject);
  const what = `updating the referrers of ${subject} (tag ${tag}) in ${registry}/${repository}`;
  const index = await readReferrersTagIndex(client, subject, signal, what);
  const listed = new Set(
    index.manifests
      .map((entry) =>
        typeof entry === 'object' && entry !== null ? (entry as { digest?: unknown }).digest : undefined,
      )
      .filter((digest): digest is string => typeof digest === 'string'),
  );
  let added = false;
  for (const referrer of referrers) {
    if (listed.has(referrer.digest)) continue;
    listed.add(referrer.digest);
    index.manifests.push({ ...referrer });
    added = true;
  }
  if (!added) return;
  const body = Buffer.from(
    JSON.stringify({
      ...index.object,
      schemaVersion: 2,
      mediaType: MediaTypes.OciIndex,
      manifests: index.manifests,
    }),
  );
  const response = await client.requestExpecting(
    {
      method: 'PUT',
      target: `/v2/${repository}/manifests/${tag}`,
      headers: { 'content-type': MediaTypes.OciIndex },
      body,
      signal,
      what,
    },
    [200, 201, 202, 204],
  );
  await response.body.dump();
}

/**
 * Writes referrer manifests to a registry repository (a destination's `putReferrer`), and keeps the
 * referrers tag schema of registries without the referrers API up to date:
 * - `putReferrer` PUTs the manifest by digest (never by tag). A registry with the referrers API answers
 *   with an `OCI-Subject` header and indexes the manifest itself; without that header, the referrer
 *   is remembered for its subject's tag index.
 * - `commit` updates each remembered subject's tag index once (`addToReferrersTagIndex`), so the tags
 *   move only when the whole copy succeeded, like the image's tag.
 */
export class ReferrersWriter {
  private readonly pendingTagIndexes = new Map<Digest, ReferrerDescriptor[]>();

  constructor(private readonly client: RegistryClient) {}

  async putReferrer(
    manifest: Uint8Array,
    referrer: ReferrerDescriptor,
    subject: Digest,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const { registry, repository } = this.client.scope;
    const response = await this.client.requestExpecting(
      {
        method: 'PUT',
        target: `/v2/${repository}/manifests/${referrer.digest}`,
        headers: { 'content-type': referrer.mediaType },
        body: manifest,
        signal,
        what: `writing referrer ${referrer.digest} of ${subject} to ${registry}/${repository}`,
      },
      [200, 201, 202, 204],
    );
    await response.body.dump();
    if (headerValue(response.headers, 'oci-subject') !== undefined) return;
    const pending = this.pendingTagIndexes.get(subject) ?? [];
    if (!pending.some((entry) => entry.digest === referrer.digest)) pending.push(referrer);
    this.pendingTagIndexes.set(subject, pending);
  }

  /** Updates the tag index of every subject that got referrers the registry did not index itself. */
  async commit(signal: AbortSignal | undefined): Promise<void> {
    for (const [subject, referrers] of this.pendingTagIndexes) {
      await addToReferrersTagIndex(this.client, subject, referrers, signal);
      this.pendingTagIndexes.delete(subject);
    }
  }
}
