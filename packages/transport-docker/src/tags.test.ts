import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
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
 * Distribution 2.8 (the registry the other tests run) ignores `n` for tag lists, so pagination is
 * exercised against this small server implementing the distribution-spec's tag listing: sorted tags,
 * `n` and `last`, and a relative `Link: <…>; rel="next"` while more remain (as Distribution 3 does).
 */
describe('tag listing pagination (distribution-spec server)', () => {
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
      code: 'ERR_GANTRY_IMAGE_NOT_FOUND',
      message: expect.stringContaining('name unknown: repository name not known to registry'),
    });
    await transport.closeConnections();
  });
});
