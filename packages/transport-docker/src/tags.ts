import { type DockerReference, ErrorCodes, GantryError, type TransportContext } from '@gantry/core';
import { headerValue } from './manifests.js';
import { registryAccessFor } from './registries.js';
import { RegistryClient } from './registry-client.js';
import { readLimitedBody } from './registry-errors.js';
import type { DockerTransportState } from './transport-state.js';

export interface ListTagsOptions {
  /** Tags asked per page (`n=`); the registry's default when undefined. */
  pageSize?: number;
}

const maxTagPageBytes = 16 * 1024 * 1024;

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
 * Lists every tag of a repository (`GET /v2/<name>/tags/list`), following `Link: <…>; rel="next"`
 * pages until the last. 404 (no such repository) → `ERR_GANTRY_IMAGE_NOT_FOUND`.
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
  const what = `listing tags of ${repository.name}`;
  const first = new URL(`/v2/${repository.path}/tags/list`, `${client.origin}/`);
  if (options.pageSize !== undefined) first.searchParams.set('n', String(options.pageSize));
  const tags: string[] = [];
  const seen = new Set<string>();
  let target: URL | undefined = first;
  while (target !== undefined) {
    if (seen.has(target.href))
      throw new GantryError(ErrorCodes.Internal, `${what}: the registry's pages loop`);
    seen.add(target.href);
    const response = await client.requestExpecting(
      { method: 'GET', target, signal: context.signal, what },
      [200],
      ErrorCodes.ImageNotFound,
    );
    const body = await readLimitedBody(response.body, maxTagPageBytes + 1);
    if (body.byteLength > maxTagPageBytes)
      throw new GantryError(ErrorCodes.Internal, `${what}: a page of tags is too large`);
    let page: { tags?: unknown };
    try {
      page = JSON.parse(body.toString('utf8')) as { tags?: unknown };
    } catch {
      throw new GantryError(ErrorCodes.Internal, `${what}: invalid answer (not JSON)`);
    }
    if (page.tags !== null && page.tags !== undefined) {
      if (!Array.isArray(page.tags) || !page.tags.every((tag) => typeof tag === 'string')) {
        throw new GantryError(
          ErrorCodes.Internal,
          `${what}: invalid answer ("tags" is not a list of strings)`,
        );
      }
      tags.push(...(page.tags as string[]));
    }
    const next = nextPageLink(headerValue(response.headers, 'link'));
    target = next === undefined ? undefined : new URL(next, target);
  }
  return tags;
}
