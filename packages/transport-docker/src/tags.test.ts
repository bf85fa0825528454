import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Transport } from '@gantry/core/transport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nextPageLink } from './tags.js';
import { dockerContext } from './testing/test-helpers.js';
import { createDockerTransport } from './transport.js';

describe('nextPageLink', () => {
  it('finds the rel="next" target among several links', () => {
    expect(nextPageLink('</v2/a/tags/list?last=b&n=2>; rel="next"')).toBe('/v2/a/tags/list?last=b&n=2');
    expect(nextPageLink('<https://x/prev>; rel="prev", <https://x/next?a=1,2>; rel="next"')).toBe(
      'https://x/next?a=1,2',
    );
    expect(nextPageLink('<https://x/y>; rel=next')).toBe('https://x/y');
    expect(nextPageLink('<https://x/y>; rel="prev"')).toBeUndefined();
    expect(nextPageLink(undefined)).toBeUndefined();
  });
});

/**
 * Distribution 2.8 (the registry the other tests run) ignores `n` for tag lists and has no referrers
 * API, so both are exercised against this small server implementing the distribution-spec: sorted
 * tags with `n` and `last`, a paged referrers index, and relative `Link: <…>; rel="next"` headers
 * while more remain (as Distribution 3 does).
 */
describe('pagination against a distribution-spec server (tags, referrers API)', () => {
  const allTags = Array.from({ length: 7 }, (_, index) => `t${index}`);
  const requests: string[] = [];
  let server: Server;
  let host: string;

  beforeAll(async () => {
    server = createServer((request, response) => {
      const url = new URL(request.url ?? '/', 'http://x');
      requests.push(`${url.pathname}${url.search}`);
      if (url.pathname === '/v2/') {
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        return;
      }
      if (url.pathname.startsWith('/v2/team/app/referrers/')) {
        const manifests = [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: `sha256:${'a'.repeat(64)}`,
            size: 10,
            artifactType: 'x/sig',
          },
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: `sha256:${'b'.repeat(64)}`,
            size: 11,
            artifactType: 'x/sbom',
          },
        ];
        const page = url.searchParams.get('page') === '2' ? manifests.slice(1) : manifests.slice(0, 1);
        const headers: Record<string, string> = { 'content-type': 'application/vnd.oci.image.index.v1+json' };
        if (url.searchParams.get('page') !== '2') headers.link = `<${url.pathname}?page=2>; rel="next"`;
        response.writeHead(200, headers).end(JSON.stringify({ schemaVersion: 2, manifests: page }));
        return;
      }
      if (url.pathname !== '/v2/team/app/tags/list') {
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end(
          JSON.stringify({
            errors: [{ code: 'NAME_UNKNOWN', message: 'repository name not known to registry' }],
          }),
        );
        return;
      }
      const size = Number(url.searchParams.get('n') ?? allTags.length);
      const last = url.searchParams.get('last');
      const remaining = last === null ? allTags : allTags.filter((tag) => tag > last);
      const page = remaining.slice(0, size);
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (page.length < remaining.length) {
        headers.link = `</v2/team/app/tags/list?last=${page.at(-1)}&n=${size}>; rel="next"`;
      }
      response.writeHead(200, headers).end(JSON.stringify({ name: 'team/app', tags: page }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('follows Link pages until the last and returns every tag once, in order', async () => {
    const transport = createDockerTransport();
    requests.length = 0;
    const tags = await transport.listTags(`//${host}/team/app`, dockerContext({ tlsVerify: false }), {
      pageSize: 3,
    });
    expect(tags).toEqual(allTags);
    expect(requests.filter((request) => request.includes('/tags/list'))).toEqual([
      '/v2/team/app/tags/list?n=3',
      '/v2/team/app/tags/list?last=t2&n=3',
      '/v2/team/app/tags/list?last=t5&n=3',
    ]);
    await expect(
      transport.listTags(`//${host}/team/none`, dockerContext({ tlsVerify: false })),
    ).rejects.toMatchObject({
      code: 'ERR_GANTRY_REPOSITORY_NOT_FOUND',
      message: expect.stringContaining('name unknown: repository name not known to registry'),
    });
    await transport.closeConnections();
  });

  it('implements the contract listTags(ImageReference): the tag or digest of the reference is ignored', async () => {
    const transport = createDockerTransport();
    const context = dockerContext({ tlsVerify: false });
    const asContract: Transport = transport;
    expect(await asContract.listTags?.(transport.parseReference(`//${host}/team/app:t3`), context)).toEqual(
      allTags,
    );
    expect(
      await asContract.listTags?.(
        transport.parseReference(`//${host}/team/app@sha256:${'d'.repeat(64)}`),
        context,
      ),
    ).toEqual(allTags);
    const other = createDockerTransport().parseReference(`//${host}/team/app`);
    await expect(transport.listTags(other, context)).rejects.toThrow(
      /not a reference of this docker transport/,
    );
    await transport.closeConnections();
  });

  it('lists referrers with the referrers API across pages, filtering by artifact type itself', async () => {
    const transport = createDockerTransport();
    const context = dockerContext({ tlsVerify: false });
    const target = transport.parseReference(`//${host}/team/app:v1`);
    const subject = `sha256:${'c'.repeat(64)}`;
    expect(
      (await transport.listReferrers(target, subject, context)).map((referrer) => referrer.artifactType),
    ).toEqual(['x/sig', 'x/sbom']);
    requests.length = 0;
    expect(await transport.listReferrers(target, subject, context, { artifactType: 'x/sbom' })).toEqual([
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: `sha256:${'b'.repeat(64)}`,
        size: 11,
        artifactType: 'x/sbom',
      },
    ]);
    expect(requests.filter((request) => request.includes('/referrers/'))).toEqual([
      `/v2/team/app/referrers/${subject}?artifactType=x%2Fsbom`,
      `/v2/team/app/referrers/${subject}?page=2`,
    ]);
    await transport.closeConnections();
  });
});
