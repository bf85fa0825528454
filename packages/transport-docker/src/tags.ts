import { type DockerReference, ErrorCodes, GantryError, type TransportContext } from '@gantry/core/transport';
import { headerValue } from './manifests.js';
import { registryAccessFor } from './registries.js';
import { RegistryClient } from './registry-client.js';
import { readLimitedBody } from './registry-errors.js';
import type { DockerTransportState } from './transport-state.js';

export interface ListTagsOptions {
  /** Entries asked per page (`n=`); the registry's default when undefined. */
  pageSize?: number;
}

const maxPageBytes = 16 * 1024 * 1024;

/** The `rel="next"` target of a `Link` header (RFC 8288), if any. */
export function nextPageLink(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(/,(?=\s*<)/)) {
    const match = /^\s*<([^>]*)>(.*)$/.exec(part);
    if (!match) continue;
    if (/;\s*rel\s*=\s*"?([^";]*\s)?next(\s[^";]*)?"?\s*(;|$)/i.test(match[2]!)) return match[1];
  }
  return undefined;
}

/**
 * GETs `first` and the pages its `Link: <…>; rel="next"` headers chain, collecting the string list
 * `field` of each JSON page. 404 → `ERR_GANTRY_REPOSITORY_NOT_FOUND`.
 */
async function collectPages(
  client: RegistryClient,
  first: URL,
  field: 'tags' | 'repositories',
  what: string,
  signal: AbortSignal | undefined,
  extraScopes?: string[],
): Promise<string[]> {
  const values: string[] = [];
  const seen = new Set<string>();
  let target: URL | undefined = first;
  while (target !== undefined) {
    if (seen.has(target.href))
      throw new GantryError(ErrorCodes.Internal, `${what}: the registry's pages loop`);
    seen.add(target.href);
    const response = await client.requestExpecting(
      { method: 'GET', target, signal, what, ...(extraScopes ? { extraScopes } : {}) },
      [200],
      ErrorCodes.RepositoryNotFound,
    );
    const body = await readLimitedBody(response.body, maxPageBytes + 1);
    if (body.byteLength > maxPageBytes)
      throw new GantryError(ErrorCodes.Internal, `${what}: a page is too large`);
    let page: Record<string, unknown>;
    try {
      page = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new GantryError(ErrorCodes.Internal, `${what}: invalid answer (not JSON)`);
    }
    const list = page[field];
    if (list !== null && list !== undefined) {
      if (!Array.isArray(list) || !list.every((value) => typeof value === 'string')) {
        throw new GantryError(
          ErrorCodes.Internal,
          `${what}: invalid answer ("${field}" is not a list of strings)`,
        );
      }
      values.push(...(list as string[]));
    }
    const next = nextPageLink(headerValue(response.headers, 'link'));
    target = next === undefined ? undefined : new URL(next, target);
  }
  return values;
}

/**
 * Lists every tag of a repository (`GET /v2/<name>/tags/list`), following `Link: <…>; rel="next"`
 * pages until the last. 404 (no such repository) → `ERR_GANTRY_REPOSITORY_NOT_FOUND` (not an image's
 * absence: `inspect` reading RepoTags must not exit 2 for it).
 */
export async function listRepositoryTags(
  state: DockerTransportState,
  repository: DockerReference,
  context: TransportContext = {},
  options: ListTagsOptions = {},
): Promise<string[]> {
  const access = await registryAccessFor(context, repository.name);
  const client = await RegistryClient.open(
    state,
    { registry: repository.domain, repository: repository.path, actions: 'pull', role: 'source' },
    context,
    access,
  );
  const first = new URL(`/v2/${repository.path}/tags/list`, `${client.origin}/`);
  if (options.pageSize !== undefined) first.searchParams.set('n', String(options.pageSize));
  return collectPages(client, first, 'tags', `listing tags of ${repository.name}`, context.signal);
}

/**
 * Lists every repository of a registry (`GET /v2/_catalog`, all pages; the token scope is
 * `registry:catalog:*`). `registry` is `host[:port]`. Registries that do not offer the catalog
 * answer 404 (`ERR_GANTRY_REPOSITORY_NOT_FOUND`) or 401/403 (`ERR_GANTRY_UNAUTHORIZED`).
 */
export async function listRegistryRepositories(
  state: DockerTransportState,
  registry: string,
  context: TransportContext = {},
  options: ListTagsOptions = {},
): Promise<string[]> {
  const access = await registryAccessFor(context, registry);
  const client = await RegistryClient.open(
    state,
    { registry, repository: '', actions: '', role: 'source' },
    context,
    access,
  );
  const first = new URL('/v2/_catalog', `${client.origin}/`);
  if (options.pageSize !== undefined) first.searchParams.set('n', String(options.pageSize));
  return collectPages(client, first, 'repositories', `listing repositories of ${registry}`, context.signal, [
    'registry:catalog:*',
  ]);
}
